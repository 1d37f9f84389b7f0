"""Sparse files and files that grow while they are copied.

A 1 TB file (``truncate``) with four 64 KiB extents written: ``copy_file`` (reflink
``auto`` and ``never``), ``cp`` of the file and ``cp -r`` of a tree holding it keep it
sparse (SEEK_DATA / SEEK_HOLE in native/replace.c, as ``cp --sparse=auto``): the copy's
``st_blocks`` is the source's, its size equal, the extents equal, and it takes
milliseconds (``copy_file_range`` alone writes the holes as zeros on ext4 and tmpfs: about
an hour and 1 TB of disk here).  Onto a 16 MiB tmpfs too, where a single filled hole
would be ``ENOSPC``.  A file appended to by another thread while it is copied gives a copy
of the size it had when the copy started (as GNU cp), a prefix of what it holds after,
with no error (docs/SECURITY.md, "Faults and hostile trees").
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _util import call_with_timeout, mounted_tmpfs

TB = 1 << 40
EXTENTS = [0, 1 << 30, 777 << 30, TB - (64 << 10)]  # the first and the last 64 KiB, two between
EXTENT = 64 << 10


def make_sparse(p: Path) -> None:
    with open(p, "wb") as f:
        f.truncate(TB)
        for i, off in enumerate(EXTENTS):
            f.seek(off)
            f.write(bytes([i + 1]) * EXTENT)
    if os.stat(p).st_blocks * 512 > 64 * EXTENT:
        pytest.skip("this file system does not keep holes")


def check_sparse_copy(src: Path, dst: Path) -> None:
    s, d = os.stat(src), os.stat(dst)
    assert d.st_size == s.st_size == TB
    assert d.st_blocks <= s.st_blocks + 64, f"holes filled: {d.st_blocks} blocks vs the source's {s.st_blocks}"
    with open(src, "rb") as a, open(dst, "rb") as b:
        for off in EXTENTS + [EXTENT, 5 << 30, TB - (64 << 10) - 100]:  # the extents and some holes
            a.seek(off)
            b.seek(off)
            assert a.read(EXTENT + 100) == b.read(EXTENT + 100), off


def test_copy_file_keeps_a_1tb_sparse_file_sparse(fs: Any, root_dir: Path) -> None:
    make_sparse(root_dir / "sparse")
    for how in ("auto", "never"):
        t = time.monotonic()
        call_with_timeout(lambda: fs.copy_file("sparse", f"copy-{how}", reflink=how), 30)
        elapsed = time.monotonic() - t
        check_sparse_copy(root_dir / "sparse", root_dir / f"copy-{how}")
        print(f"copy_file of a 1 TB sparse file (reflink={how}): {elapsed * 1000:.1f} ms, "
              f"{os.stat(root_dir / f'copy-{how}').st_blocks} blocks")
    call_with_timeout(lambda: fs.cp("sparse", "cp-one"), 30)
    check_sparse_copy(root_dir / "sparse", root_dir / "cp-one")
    call_with_timeout(lambda: fs.copy_file("sparse", "copy-auto"), 30)  # over an existing copy
    check_sparse_copy(root_dir / "sparse", root_dir / "copy-auto")


def test_cp_r_keeps_a_sparse_file_sparse(fs: Any, root_dir: Path) -> None:
    (root_dir / "t" / "d").mkdir(parents=True)
    make_sparse(root_dir / "t" / "d" / "sparse")
    (root_dir / "t" / "plain").write_bytes(b"p" * 100_000)
    call_with_timeout(lambda: fs.cp("t", "t2", recursive=True), 30)
    check_sparse_copy(root_dir / "t" / "d" / "sparse", root_dir / "t2" / "d" / "sparse")
    assert (root_dir / "t2" / "plain").read_bytes() == b"p" * 100_000
    assert fs.du("t2")[0] < 64 * EXTENT  # du counts blocks: the copy's are few


def test_sparse_copy_onto_a_small_tmpfs(fs: Any, root_dir: Path) -> None:
    """16 MiB hold the copies only if no hole is written."""
    make_sparse(root_dir / "sparse")
    with mounted_tmpfs(root_dir / "small", "16m") as small:
        call_with_timeout(lambda: fs.copy_file("sparse", "small/copy"), 30)
        check_sparse_copy(root_dir / "sparse", small / "copy")
        call_with_timeout(lambda: fs.copy_file("small/copy", "small/copy2", reflink="never"), 30)
        check_sparse_copy(root_dir / "sparse", small / "copy2")
        (small / "copy").unlink()
        (small / "copy2").unlink()


def test_sparse_files_whose_ends_are_holes(fs: Any, root_dir: Path) -> None:
    """Leading and trailing holes, a file that is all hole, and a plain small file."""
    cases = {"lead": (1 << 30, [(1 << 29, b"x" * 5000)]), "trail": (1 << 30, [(0, b"y" * 5000)]),
             "none": (1 << 30, []), "small": (10, [(0, b"0123456789")])}
    for name, (size, parts) in cases.items():
        with open(root_dir / name, "wb") as f:
            f.truncate(size)
            for off, data in parts:
                f.seek(off)
                f.write(data)
        fs.copy_file(name, f"{name}.copy")
        s, d = os.stat(root_dir / name), os.stat(root_dir / f"{name}.copy")
        assert d.st_size == s.st_size and d.st_blocks <= s.st_blocks + 8, name
        with open(root_dir / f"{name}.copy", "rb") as f:
            for off, data in parts:
                f.seek(off)
                assert f.read(len(data)) == data, name


def test_copy_of_a_file_being_appended_to(fs: Any, root_dir: Path) -> None:
    """Another thread appends numbered 64 KiB records (one per millisecond at most, 256 MiB
    in all) while the file is copied, six times: no error, no crash; each copy is a
    prefix of the source as it is afterwards, at least as long as the source was before
    the call (the size fstat saw when the copy started: what is appended meanwhile is not
    copied)."""
    src = root_dir / "growing"
    record = 64 << 10
    src.write_bytes(b"".join(b"%08d" % i * (record // 8) for i in range(256)))  # 16 MiB to start
    stop = threading.Event()
    appended = [0]

    def append() -> None:
        with open(src, "ab") as f:
            for i in range(256, 256 + 4096):
                if stop.is_set():
                    return
                f.write(b"%08d" % i * (record // 8))
                f.flush()
                appended[0] += 1
                time.sleep(0.001)  # bounded: the test must not fill the disk

    t = threading.Thread(target=append, daemon=True)
    t.start()
    lengths = []
    try:
        for k in range(6):
            before = os.stat(src).st_size
            if k % 2 == 0:
                call_with_timeout(lambda: fs.copy_file("growing", f"copy{k}"), 60)
            else:
                call_with_timeout(lambda: fs.cp("growing", f"copy{k}"), 60)
            got = (root_dir / f"copy{k}").read_bytes()
            assert len(got) >= before, (len(got), before)
            with open(src, "rb") as f:
                assert f.read(len(got)) == got, f"copy {k} is not a prefix of the source"
            lengths.append(len(got) - before)
            (root_dir / f"copy{k}").unlink()
    finally:
        stop.set()
        t.join(10)
    print(f"appended {appended[0]} records of 64 KiB meanwhile; copy length minus the size before "
          f"the call: {lengths}")
