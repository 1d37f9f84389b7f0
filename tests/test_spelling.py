"""Every spelling of a path gets the same answer, under every resolve flag, over every backend.

``x``, ``./x``, ``x/`` (for a directory) and ``d/../x`` name the same thing, so ``stat``,
``lstat``, ``exists``, ``realpath`` and ``listdir`` must answer alike for all of them: the
same result, or the same exception with the same errno and message. This held by accident
before, except where Python resolved on its own: with a mount at ``mnt`` and
``Root(no_xdev=True)``, ``stat("mnt")`` (an ``fstatat`` fast path) succeeded while
``stat("./mnt")`` was refused. Now one resolver answers every spelling, and a mount refused
by ``no_xdev`` says "crosses a mount point", not "escapes the root".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from _util import tmpfs
from backends import BACKENDS
from beneathd.protocol import EscapeError

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "d").mkdir()
    (root / "x").write_bytes(b"x")
    (root / "dd").mkdir()
    (root / "dd" / "in").write_bytes(b"in")
    os.symlink("x", root / "lx")
    os.symlink("dd", root / "ldd")
    with tmpfs(root / "mnt") as mnt:  # a real mount when we may mount
        (mnt / "f").write_bytes(b"on the mount")
        yield root


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        v = fn()
    except OSError as e:
        return "raise", (type(e).__name__, e.errno, e.strerror)
    if isinstance(v, os.stat_result):
        return "ok", (v.st_dev, v.st_ino, v.st_mode)
    if isinstance(v, list):
        return "ok", sorted(v)
    return "ok", v


#: name -> its other spellings
SPELLINGS = {
    "x": ["./x", "d/../x", ".//x"],
    "dd": ["./dd", "dd/", "d/../dd", "dd//"],
    "dd/in": ["./dd/in", "dd/./in", "d/../dd/in", "dd//in"],
    "lx": ["./lx", "d/../lx"],
    "ldd": ["./ldd", "d/../ldd"],
    "mnt": ["./mnt", "mnt/", "d/../mnt"],
    "mnt/f": ["./mnt/f", "d/../mnt/f", "mnt/./f"],
}

OPS: dict[str, Callable[[Any, str], Any]] = {
    "stat": lambda fs, p: fs.stat(p),
    "lstat": lambda fs, p: fs.lstat(p),
    "exists": lambda fs, p: fs.exists(p),
    "realpath": lambda fs, p: fs.realpath(p),
    "listdir": lambda fs, p: fs.listdir(p),
}


@pytest.mark.parametrize("no_xdev", [False, True], ids=["default", "no_xdev"])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_spelling_same_answer(tree: Path, backend: str, no_xdev: bool) -> None:
    with BACKENDS[backend](tree, no_xdev=no_xdev) as fs:
        for name, others in SPELLINGS.items():
            for op, call in OPS.items():
                if op == "lstat" and name in ("ldd", "dd"):
                    continue  # "ldd/" follows the link (as os.lstat does): not the same question
                want = _outcome(lambda: call(fs, name))
                for other in others:
                    if op == "lstat" and other.endswith("/"):
                        continue
                    got = _outcome(lambda: call(fs, other))
                    assert got == want, (op, name, other, want, got)


@pytest.mark.skipif(not IS_ROOT, reason="needs a mount inside the root")
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_no_xdev_refuses_the_mount_and_says_so(tree: Path, backend: str) -> None:
    with BACKENDS[backend](tree, no_xdev=True) as fs:
        for p in ("mnt", "./mnt", "mnt/", "mnt/f", "d/../mnt/f"):
            for call in (fs.stat, fs.lstat, fs.listdir, fs.read_file if "f" in p else fs.listdir):
                with pytest.raises(EscapeError) as ei:
                    call(p)
                assert "crosses a mount point" in str(ei.value), (p, ei.value)
                assert "escapes" not in str(ei.value)
                assert ei.value.filename == p
        with pytest.raises(EscapeError, match="crosses a mount point"):
            fs.write_file("mnt/new", b"no")
        with pytest.raises(EscapeError, match="crosses a mount point"):
            fs.chmod("mnt", 0o700)
        assert not (tree / "mnt" / "new").exists()
        # an escape stays an escape
        with pytest.raises(EscapeError, match="escapes the root"):
            fs.stat("../x")
        assert fs.stat("x").st_size == 1  # the rest of the root is served
    with BACKENDS[backend](tree) as fs:  # by default mounts are crossed
        assert fs.read_file("mnt/f") == b"on the mount"
        assert fs.stat("mnt").st_dev != fs.stat("d").st_dev
