"""Hostile trees: a project user can build a chain of directories as deep as the file system
allows (one mkdirat per level), and no tree operation may die, hang or run out of fds on it.

The guard for issue 16 (the daemon died by SIGSEGV on ``cp -r`` of a 3000-deep chain, from
recursion in the native walker): 100,000-deep chains through every tree operation (cp -r,
rm -r, move's copy-then-remove fallback across a mount, du, walk, watch) over ``Root``,
``Client`` and ``AsyncClient`` (whose daemon walks in worker threads), then the real daemon process, each
time checking that what was copied is whole, the daemon lives and its fd count is back
where it was. ``BENEATHD_DEEP`` changes the depth (the figures in docs/SECURITY.md).
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import call_with_timeout, tmpfs  # noqa: E402
from backends import BACKENDS  # noqa: E402
from beneathd.daemon import Root  # noqa: E402
from bench._util import make_chain as _make_chain  # noqa: E402

DEPTH = int(os.environ.get("BENEATHD_DEEP", "100000"))
IS_ROOT = os.geteuid() == 0
BOTTOM = b"the bottom of the chain\n"


def make_chain(parent: Path, name: str, depth: int, owner: tuple[int, int] | None = None) -> None:
    _make_chain(parent, name, depth, BOTTOM, owner)


def chain_depth(top: Path) -> int:
    """How many directories deep ``top`` goes, checking each holds what make_chain put there."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    depth = 1
    try:
        while True:
            names = os.listdir(fd)
            if names != ["d"]:
                assert names == ["f"], names
                f = os.open("f", os.O_RDONLY, dir_fd=fd)
                assert os.read(f, 100) == BOTTOM
                os.close(f)
                return depth
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            depth += 1
    finally:
        os.close(fd)


def fd_count(pid: int | str = "self") -> int:
    """Open fds of ``pid``, once the count has stopped changing (threads close theirs late)."""
    last, deadline = -1, time.monotonic() + 5
    while True:
        n = len(os.listdir(f"/proc/{pid}/fd"))
        if n == last or time.monotonic() > deadline:
            return n
        last = n
        time.sleep(0.05)


@pytest.fixture
def deep_root(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "root") as root:
        yield root


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_deep_chain_every_tree_operation(backend: str, deep_root: Path) -> None:
    make_chain(deep_root, "src", DEPTH)
    with BACKENDS[backend](deep_root) as fs:
        fs.stat(".")  # connected and warm
        before = fd_count()

        fs.cp("src", "copy", recursive=True)
        assert chain_depth(deep_root / "copy") == DEPTH
        fs.rm("copy", recursive=True)
        assert not os.path.lexists(deep_root / "copy")

        if IS_ROOT:  # a mount inside the root: rename gives EXDEV, move copies then removes
            with tmpfs(deep_root / "mnt"):
                fs.move("src", "mnt/moved")
                assert not os.path.lexists(deep_root / "src")
                assert chain_depth(deep_root / "mnt" / "moved") == DEPTH
                fs.rm("mnt/moved", recursive=True)
                assert os.listdir(deep_root / "mnt") == []
        else:
            fs.rm("src", recursive=True)

        assert fd_count() == before
        assert fs.listdir(".") in ([], ["mnt"])


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_deep_chain_walk_du_watch(backend: str, deep_root: Path) -> None:
    """The other walks over the same chain: ``du`` counts every level; ``walk`` enters
    directories while their path is shorter than PATH_MAX (4096 bytes: no call could name
    what is below, and os.walk cannot enter it either), so 2047 levels of ``src/d/...``;
    a recursive ``watch`` stops at its budget with ``ENOSPC`` naming it (the daemon's
    per-connection cap, 16,384 directories; the same budget given to ``Root``), its kernel
    watches and fds given back."""
    from beneathd.daemon.watch import WatchBudget

    make_chain(deep_root, "src", DEPTH)
    with BACKENDS[backend](deep_root) as fs:
        fs.stat(".")
        before = fd_count()
        assert fs.du("src")[1] == DEPTH + 1
        tops = [top for top, _dirs, _files in fs.walk("src")]
        assert len(tops) == min(DEPTH, (4096 - len("src")) // 2 + 1), len(tops)
        assert max(map(len, tops)) < 4096
        kw = {"budget": WatchBudget(16384, "watched directories per connection")} if backend.startswith("root") else {}
        if DEPTH > 16384:
            with pytest.raises(OSError) as ei:
                fs.watch("src", recursive=True, **kw)
            assert ei.value.errno == errno.ENOSPC and "16384" in str(ei.value), ei.value
        assert fd_count() == before


def test_deep_walks_on_a_small_thread_stack(deep_root: Path) -> None:
    """256 KiB of stack (a Python thread's frames and all): a recursive walker dies at a few
    dozen levels here, the iterative one walks any depth, also over an existing copy."""
    make_chain(deep_root, "src", DEPTH // 4)
    with Root(deep_root) as fs:
        for _ in range(2):
            call_with_timeout(lambda: fs.cp("src", "copy", recursive=True), None, stack=256 * 1024)
            assert chain_depth(deep_root / "copy") == DEPTH // 4
        call_with_timeout(lambda: fs.rm("copy", recursive=True), None, stack=256 * 1024)
        call_with_timeout(lambda: fs.rm("src", recursive=True), None, stack=256 * 1024)
        assert os.listdir(deep_root) == []


def test_deep_tree_with_wide_levels_and_links(deep_root: Path) -> None:
    """Every level also holds files, a link out and a link in: copied as links, never followed,
    all removed; the reopen path (beyond the fd window) sees the same listing."""
    outside = deep_root.parent / "outside-secret"
    outside.write_bytes(b"secret")
    fd = os.open(deep_root, os.O_PATH | os.O_DIRECTORY)
    levels = 300
    try:
        for i in range(levels):
            n = "t" if i == 0 else "d"
            os.mkdir(n, dir_fd=fd)
            nfd = os.open(n, os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            for k in range(3):
                f = os.open(f"f{k}", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
                os.write(f, b"%d" % i)
                os.close(f)
            os.symlink(str(outside), "out", dir_fd=fd)
            os.symlink("f0", "in", dir_fd=fd)
    finally:
        os.close(fd)
    with Root(deep_root) as fs:
        fs.cp("t", "c", recursive=True)
        p = deep_root / "c"
        for i in range(levels):
            assert sorted(os.listdir(p)) == (["d"] if i < levels - 1 else []) + ["f0", "f1", "f2", "in", "out"]
            assert (p / "f2").read_bytes() == b"%d" % i
            assert os.readlink(p / "out") == str(outside)
            assert os.stat(p / "f1").st_mode & 0o777 == 0o640
            p = p / "d"
        fs.rm("c", recursive=True)
        fs.rm("t", recursive=True)
        assert os.listdir(deep_root) == []
    assert outside.read_bytes() == b"secret"


def test_tree_deeper_than_the_limit_names_it(deep_root: Path) -> None:
    """Beyond BN_TREE_MAX_DEPTH a walk stops with an error that says so (not ELOOP)."""
    from beneathd._native import lib

    limit = lib.BN_TREE_MAX_DEPTH
    assert limit >= 1_000_000  # far beyond anything cp -a or rm -rf are asked to do
    if os.environ.get("BENEATHD_DEEP_LIMIT") != "1":
        pytest.skip("building a 1M-deep chain takes a minute; BENEATHD_DEEP_LIMIT=1 runs it")
    make_chain(deep_root, "src", limit + 1)
    with Root(deep_root) as fs:
        with pytest.raises(OSError) as ei:
            fs.rm("src", recursive=True)
        assert ei.value.errno == errno.ENAMETOOLONG and str(limit) in str(ei.value)


#: Under Landlock every checked syscall walks the dentries up to the rule on the root, so
#: it costs O(depth) and a walk of a chain O(depth**2) (docs/SECURITY.md, "Hostile trees"):
#: the confined daemon gets the depth that killed it (issue 16), the unconfined one 100,000.
LANDLOCK_DEPTH = int(os.environ.get("BENEATHD_DEEP_LANDLOCK", "3000"))


@pytest.mark.skipif(not IS_ROOT, reason="starts the real daemon as root -> nobody")
@pytest.mark.parametrize("landlock", [True, False], ids=["landlock", "no-landlock"])
def test_deep_chain_through_the_daemon_process(tmp_path: Path, landlock: bool) -> None:
    """The real daemon (privilege drop, worker threads, Landlock or not): cp -r and rm -r
    of a deep chain complete; the daemon lives; its fds are back where they were."""
    import pwd

    from beneathd.client import Client
    from test_daemon import start_daemon

    depth = LANDLOCK_DEPTH if landlock else DEPTH
    nobody = pwd.getpwnam("nobody")
    extra = () if landlock else ("--no-landlock",)
    with tmpfs(tmp_path / "root") as root:
        # started on the empty root: its fixture chowns the tree with os.walk
        with start_daemon(tmp_path, *extra, root=root) as d, Client(d.sock) as c:
            assert ("Landlock ABI" in d.stderr()) == landlock or "unavailable" in d.stderr()
            make_chain(root, "src", depth, owner=(nobody.pw_uid, nobody.pw_gid))
            c.stat(".")
            before = d.fds()
            c.cp("src", "copy", recursive=True)
            assert chain_depth(root / "copy") == depth
            c.rm("copy", recursive=True)
            c.rm("src", recursive=True)
            assert c.listdir(".") == []
            assert d.alive()
            assert d.fds() == before


def test_walk_limit_names_itself(deep_root: Path) -> None:
    """``Root.walk_limit`` lowers the depth walks descend; deeper fails with ENAMETOOLONG
    naming the limit (never ELOOP), at exactly that depth."""
    make_chain(deep_root, "ok", 100)
    make_chain(deep_root, "deep", 101)
    with Root(deep_root) as fs:
        from beneathd._native import lib

        assert fs.walk_limit == lib.BN_TREE_MAX_DEPTH
        for bad in (0, -1, lib.BN_TREE_MAX_DEPTH + 1, 2.5, True):
            with pytest.raises(ValueError):
                fs.walk_limit = bad
        fs.walk_limit = 100
        fs.cp("ok", "ok2", recursive=True)
        assert chain_depth(deep_root / "ok2") == 100
        for call in (lambda: fs.cp("deep", "deep2", recursive=True), lambda: fs.rm("deep", recursive=True)):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.ENAMETOOLONG and "100 levels" in str(ei.value), ei.value
            assert ei.value.filename == "deep"
        fs.walk_limit = 101
        fs.rm("deep", recursive=True)
        fs.rm("deep2", recursive=True)


@pytest.mark.skipif(not IS_ROOT, reason="starts the real daemon as root -> nobody")
def test_daemon_walk_limit_under_landlock(tmp_path: Path) -> None:
    """Under Landlock the daemon walks at most 4096 levels by default (each level costs
    time proportional to its depth there) and says so; ``--walk-limit`` sets it, and a
    deeper tree fails over the socket with the limit named."""
    import pwd

    from beneathd.client import Client
    from test_daemon import start_daemon

    nobody = pwd.getpwnam("nobody")
    with tmpfs(tmp_path / "root") as root:
        with start_daemon(tmp_path, root=root) as d:
            assert "walk limit: 4096 levels" in d.stderr() or "Landlock ABI" not in d.stderr()
        with start_daemon(tmp_path, "--walk-limit", "300", root=root) as d, Client(d.sock) as c:
            assert "walk limit: 300 levels" in d.stderr()
            make_chain(root, "src", 301, owner=(nobody.pw_uid, nobody.pw_gid))
            with pytest.raises(OSError) as ei:
                c.cp("src", "copy", recursive=True)
            assert ei.value.errno == errno.ENAMETOOLONG and "300 levels" in str(ei.value), ei.value
            assert d.alive()
