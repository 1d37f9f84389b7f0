"""A full file system inside the root: every writer fails with ``OSError(ENOSPC)``, nothing is lost.

A 4 MiB tmpfs is mounted at ``full/`` inside the root and filled.  ``write_file`` (inline
and through an atomic writer's fd), ``open(..., atomic=True)``, ``copy_file`` and ``cp``
(one file and ``-r``) onto it must raise ``OSError`` with ``errno.ENOSPC`` and the
caller's own path(s) (never the root's absolute path), leave the old destination
byte-identical, leave no temporary name (``.NAME.beneathd-XXXX``), and the daemon (or
``Root``) must serve the next call.  ``cp -r`` onto a file system that fills up midway
leaves every file that fit whole and no file in part (each copied file is an atomic
replace), while GNU ``cp -r`` leaves the file it was writing truncated: both are measured
here (docs/SECURITY.md, "Faults and hostile trees").

A real quota (``EDQUOT``) cannot be set up here: this kernel has no quota format for
tmpfs or ext4 (``CONFIG_TMPFS_QUOTA``, ``CONFIG_QFMT_V2`` unset) and no xfs/btrfs tools are
installed.  So ``EDQUOT`` is injected instead: a child process whose ``write``, ``pwrite64``
and ``copy_file_range`` fail with it (seccomp) runs the same writers on ``Root``.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from _util import mounted_tmpfs

SIZE = "4m"
TEMP_MARK = ".beneathd-"
OLD = b"old contents, which must survive\n" * 100
BIG = 2 << 20  # above the clients' BIG_WRITE (64 KiB): written through an atomic writer's fd


def fill(d: Path, leave: int = 0) -> None:
    """Fill the file system of ``d`` to the last page, then free ``leave`` bytes."""
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\xff" * (64 << 10)
        while True:
            try:
                os.write(fd, block)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        while True:  # the last partial block
            try:
                os.write(fd, b"\xff" * 512)
            except OSError:
                break
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    assert os.statvfs(d).f_bavail * os.statvfs(d).f_frsize <= leave


def temps(top: Path) -> list[str]:
    return [os.path.join(dp, n) for dp, dns, fns in os.walk(top) for n in dns + fns if TEMP_MARK in n]


@pytest.fixture
def full(root_dir: Path) -> Iterator[Path]:
    """``root_dir/full``: a 4 MiB tmpfs holding ``old`` (OLD), filled to the last page."""
    with mounted_tmpfs(root_dir / "full", SIZE) as d:
        (d / "old").write_bytes(OLD)
        (d / "sub").mkdir()
        (d / "sub" / "old").write_bytes(OLD)
        fill(d)
        yield d


def check_enospc(e: pytest.ExceptionInfo[OSError], root_dir: Path, *paths: str) -> None:
    assert e.value.errno == errno.ENOSPC, repr(e.value)
    assert str(root_dir) not in str(e.value)
    if paths:
        assert (e.value.filename, e.value.filename2)[: len(paths)] == paths, repr(e.value)


def check_intact(fs: Any, full: Path) -> None:
    """The old destinations byte-identical, no temporary left, and the next call served."""
    assert (full / "old").read_bytes() == OLD
    assert (full / "sub" / "old").read_bytes() == OLD
    assert temps(full) == []
    assert fs.stat("full/old").st_size == len(OLD)
    assert fs.exists("full/sub")


@pytest.mark.parametrize("size", [100, BIG], ids=["small", "big"])
def test_write_file_onto_full_fs(fs: Any, root_dir: Path, full: Path, size: int) -> None:
    for dst in ("full/old", "full/sub/old", "full/new"):
        with pytest.raises(OSError) as e:
            fs.write_file(dst, b"n" * size)
        check_enospc(e, root_dir, dst)
    assert not (full / "new").exists()
    check_intact(fs, full)


@pytest.mark.parametrize("mode", ["wb", "xb", "w"])
def test_atomic_writer_onto_full_fs(fs: Any, root_dir: Path, full: Path, mode: str) -> None:
    dst = "full/new" if "x" in mode else "full/old"
    data: Any = "n" * BIG if "b" not in mode else b"n" * BIG
    with pytest.raises(OSError) as e:
        with fs.open(dst, mode, atomic=True) as f:
            f.write(data)
    check_enospc(e, root_dir)  # raised by write(), as a plain file object's (no filename)
    assert not (full / "new").exists()
    check_intact(fs, full)


def test_copy_file_onto_full_fs(fs: Any, root_dir: Path, full: Path) -> None:
    (root_dir / "src").write_bytes(b"s" * BIG)
    (root_dir / "small").write_bytes(b"s" * 100)
    for src in ("src", "small"):
        for dst in ("full/old", "full/new"):
            for call in (lambda: fs.copy_file(src, dst), lambda: fs.cp(src, dst),
                         lambda: fs.copy_file(src, dst, reflink="never")):
                with pytest.raises(OSError) as e:
                    call()
                check_enospc(e, root_dir, src, dst)
    assert not (full / "new").exists()
    check_intact(fs, full)


def _tree(top: Path) -> dict[str, bytes]:
    """Eight 600 KiB files in two directories, plus small ones: about 4.8 MiB."""
    files = {}
    for i in range(8):
        files[f"{'ab'[i % 2]}/f{i}"] = bytes([65 + i]) * (600 << 10)
    for i in range(20):
        files[f"{'ab'[i % 2]}/s{i}"] = bytes([97 + i]) * 1000
    for rel, data in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    return files


def _left(top: Path, files: dict[str, bytes]) -> tuple[int, int, list[str]]:
    """(files copied whole, files absent, files in part) under ``top``."""
    whole, absent, part = 0, 0, []
    for rel, data in files.items():
        p = top / rel
        if not p.exists():
            absent += 1
        elif p.read_bytes() == data:
            whole += 1
        else:
            assert data.startswith(p.read_bytes()), f"{rel}: neither a prefix nor whole"
            part.append(f"{rel}: {p.stat().st_size} of {len(data)} bytes")
    return whole, absent, part


FIGURES: dict[str, tuple[int, int, list[str]]] = {}


def test_cp_r_onto_full_fs(fs: Any, root_dir: Path, full: Path) -> None:
    """The tree does not fit: the first ENOSPC is raised (naming the caller's paths), the
    walk goes on like ``cp -r`` (smaller files may still fit), and what is left is every
    file that fit, whole; the others absent (or their old contents: an existing
    destination tree is not touched file by file); no file in part, no temporary."""
    files = _tree(root_dir / "tree")
    os.truncate(full / "filler", 0)  # ~3.9 MiB free: some files fit, some do not
    fill(full, leave=2 << 20)
    with pytest.raises(OSError) as e:
        fs.cp("tree", "full/copy", recursive=True)
    check_enospc(e, root_dir, "tree", "full/copy")
    whole, absent, part = _left(full / "copy", files)
    FIGURES["beneathd"] = (whole, absent, part)
    print(f"cp -r onto 2 MiB free: {whole} files whole, {absent} absent, in part: {part}")
    assert part == [] and whole >= 1 and absent >= 1
    # over an existing copy of the old tree: each file old or new, never a mix
    shutil.rmtree(full / "copy")
    os.truncate(full / "filler", 0)
    old = {rel: b"o" * len(data) for rel, data in files.items() if "/s" in rel}
    for rel, data in old.items():
        (full / "copy" / rel).parent.mkdir(parents=True, exist_ok=True)
        (full / "copy" / rel).write_bytes(data)
    fill(full, leave=1 << 20)
    with pytest.raises(OSError) as e:
        fs.cp("tree", "full/copy", recursive=True)
    check_enospc(e, root_dir, "tree", "full/copy")
    for rel in old:
        got = (full / "copy" / rel).read_bytes()
        assert got in (old[rel], files[rel]), f"{rel}: a mix"
    assert _left(full / "copy", files)[2] == []
    check_intact(fs, full)


@pytest.mark.skipif(shutil.which("cp") is None, reason="no GNU cp to compare with")
def test_gnu_cp_r_onto_full_fs_for_comparison(root_dir: Path) -> None:
    """What GNU ``cp -r`` leaves in the same situation: the file it was writing when the
    file system filled, truncated (it writes in place), besides the whole ones."""
    files = _tree(root_dir / "tree")
    with mounted_tmpfs(root_dir / "gnu", SIZE) as d:
        fill(d, leave=2 << 20)
        r = subprocess.run(["cp", "-r", str(root_dir / "tree"), str(d / "copy")], capture_output=True, text=True)
        assert r.returncode == 1 and "No space left on device" in r.stderr, r
        whole, absent, part = _left(d / "copy", files)
        FIGURES["gnu"] = (whole, absent, part)
        print(f"GNU cp -r onto 2 MiB free: {whole} files whole, {absent} absent, in part: {part}")
        assert whole >= 1 and len(part) >= 1


_EDQUOT_CHILD = r"""
import errno, os, platform, sys
sys.path.insert(0, sys.argv[2])
from seccomp_util import deny_syscall
from beneathd.daemon import Root

NRS = {"x86_64": (1, 18, 326), "aarch64": (64, 68, 285)}[platform.machine()]  # write, pwrite64, copy_file_range
root = Root(sys.argv[1])
for nr in NRS:
    deny_syscall(nr, errno.EDQUOT)


def atomic():
    with root.open("old", "wb", atomic=True, buffering=0) as f:
        f.write(b"n" * 10)


out = []
for name, call in [("write_file", lambda: root.write_file("old", b"n" * 100)),
                   ("write_file new", lambda: root.write_file("new", b"n" * 100)),
                   ("atomic", atomic),
                   ("copy_file", lambda: root.copy_file("src", "old")),
                   ("copy_file never", lambda: root.copy_file("src", "old", reflink="never")),
                   ("cp -r", lambda: root.cp("tree", "copy", recursive=True))]:
    try:
        call()
        out.append(f"{name}: no error")
    except OSError as e:
        out.append(f"{name}: {errno.errorcode.get(e.errno)} {e.filename!r} {e.filename2!r}")
os.writev(1, [("\n".join(out) + "\n").encode()])  # (write itself fails here)
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="seccomp helper: x86_64/aarch64 only")
def test_edquot_injected(root_dir: Path) -> None:
    """The writers under an injected EDQUOT fail with it, naming the caller's paths; the
    old file is intact and no temporary is left (``cp -r`` leaves its directories and no
    file)."""
    import sys

    (root_dir / "old").write_bytes(OLD)
    (root_dir / "src").write_bytes(b"s" * BIG)
    (root_dir / "tree" / "d").mkdir(parents=True)
    (root_dir / "tree" / "d" / "f").write_bytes(b"f" * 1000)
    r = subprocess.run([sys.executable, "-c", _EDQUOT_CHILD, str(root_dir), str(Path(__file__).parent)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "write_file: EDQUOT 'old' None", "write_file new: EDQUOT 'new' None", "atomic: EDQUOT None None",
        "copy_file: EDQUOT 'src' 'old'", "copy_file never: EDQUOT 'src' 'old'", "cp -r: EDQUOT 'tree' 'copy'"], r.stdout
    assert (root_dir / "old").read_bytes() == OLD
    assert not (root_dir / "new").exists() and not (root_dir / "copy" / "d" / "f").exists()
    assert temps(root_dir) == []
