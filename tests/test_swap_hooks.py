"""Deterministic swap tests (in the style of CoCalc's openat2 motivation tests).

The native code calls a hook between its steps (``bn_set_hook``): after the parent is
resolved and before the leaf is acted on (stage 1), inside tree walks between ``fstatat``
and opening the entry (stage 2), and before an atomic replace links or renames (stage 3).
Each test flips a component to a symlink pointing outside at exactly that moment and
checks that nothing outside changed and nothing outside was read.  The same flips done
against the naive path-checking implementation do escape, which shows the flips land.
Every test runs under both resolvers; the emulated resolver's own stage (4, after each
directory it steps into) is tested in tests/test_resolvers.py.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from beneathd._native import ffi, lib
from beneathd.daemon import Root
from beneathd.daemon.root import RESOLVERS
from beneathd.protocol import EscapeError
from conftest import snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._util import make_chain  # noqa: E402

_pending: dict[int, Callable[[], None]] = {}


@ffi.def_extern()  # type: ignore[misc]
def bn_py_hook(stage: int) -> None:
    action = _pending.pop(stage, None)
    if action is not None:
        action()


@pytest.fixture(params=RESOLVERS)
def resolver(request: pytest.FixtureRequest) -> str:
    """Each swap test under both resolvers (DESIGN.md, "Resolvers")."""
    return str(request.param)


@pytest.fixture
def hook() -> Iterator[Callable[[int, Callable[[], None]], None]]:
    def arm(stage: int, action: Callable[[], None]) -> None:
        _pending[stage] = action

    lib.bn_set_hook(1)
    try:
        yield arm
    finally:
        lib.bn_set_hook(0)
        _pending.clear()


def swap_to_link(path: Path, target: Path) -> Callable[[], None]:
    """Move the directory ``path`` aside and put a symlink to ``target`` in its place."""

    def act() -> None:
        os.rename(path, str(path) + ".moved")
        os.symlink(target, path)

    return act


@pytest.fixture
def tree(root_dir: Path, outside: Path) -> Path:
    (root_dir / "a" / "b").mkdir(parents=True)
    (root_dir / "a" / "b" / "f").write_bytes(b"inside\n")
    (root_dir / "t" / "sub").mkdir(parents=True)
    (root_dir / "t" / "sub" / "secret").write_bytes(b"inside too\n")
    return root_dir


def _fired() -> bool:
    return not _pending


def test_mkdir_parent_swapped_after_resolution(tree: Path, outside: Path, hook, resolver: str) -> None:
    before = snapshot(outside)
    hook(1, swap_to_link(tree / "a" / "b", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        fs.mkdir("a/b/new")
    assert _fired()
    assert snapshot(outside) == before
    assert (tree / "a" / "b.moved" / "new").is_dir()  # it landed in the directory it resolved


def test_unlink_parent_swapped(tree: Path, outside: Path, hook, resolver: str) -> None:
    (outside / "dir" / "f").write_bytes(b"outside f\n")
    before = snapshot(outside)
    hook(1, swap_to_link(tree / "a" / "b", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        fs.unlink("a/b/f")
    assert _fired()
    assert snapshot(outside) == before


def test_rename_parent_swapped(tree: Path, outside: Path, hook, resolver: str) -> None:
    before = snapshot(outside)
    hook(1, swap_to_link(tree / "a" / "b", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        # the flip lands between resolving src's parent and dst's: dst now escapes
        with pytest.raises(EscapeError):
            fs.rename("a/b/f", "a/b/g")
    assert _fired()
    assert snapshot(outside) == before
    assert (tree / "a" / "b.moved" / "f").read_bytes() == b"inside\n"


def test_copy_file_destination_swapped_before_link(tree: Path, outside: Path, hook, resolver: str) -> None:
    before = snapshot(outside)
    hook(3, swap_to_link(tree / "a" / "b", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        fs.copy_file("a/b/f", "a/b/copy")
    assert _fired()
    assert snapshot(outside) == before
    assert (tree / "a" / "b.moved" / "copy").read_bytes() == b"inside\n"


def test_rm_recursive_subdir_swapped_mid_walk(tree: Path, outside: Path, hook, resolver: str) -> None:
    before = snapshot(outside)
    hook(2, swap_to_link(tree / "t" / "sub", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        try:
            fs.rm("t", recursive=True)
        except OSError:
            pass  # failing is allowed; escaping is not
    assert _fired()
    assert snapshot(outside) == before


def test_cp_recursive_subdir_swapped_mid_walk(tree: Path, outside: Path, hook, resolver: str) -> None:
    before = snapshot(outside)
    hook(2, swap_to_link(tree / "t" / "sub", outside / "dir"))
    with Root(tree, resolver=resolver) as fs:
        try:
            fs.cp("t", "copy", recursive=True)
        except OSError:
            pass
    assert _fired()
    assert snapshot(outside) == before
    for dirpath, _dirs, files in os.walk(tree / "copy"):
        for name in files:
            assert b"inner" not in (Path(dirpath) / name).read_bytes(), "outside content copied in"


def test_naive_check_then_act_escapes_with_the_same_flip(tree: Path, outside: Path) -> None:
    """The flip above, between a realpath check and a path-based act, does escape."""
    root = os.path.realpath(tree)
    target = os.path.join(root, "a/b/new")
    assert os.path.realpath(target).startswith(root + os.sep)  # the naive check passes
    swap_to_link(tree / "a" / "b", outside / "dir")()  # the attacker's flip
    os.mkdir(target)  # the naive act
    assert (outside / "dir" / "new").is_dir()  # ...lands outside


# -- deep walks: a directory moved while the walk holds no fd on it ---------------------------


def _chain(top: Path, depth: int) -> None:
    make_chain(top.parent, top.name, depth)


def _after_calls(n: int, action: Callable[[], None]) -> Callable[[], None]:
    """An action for stage 2 that fires on the n-th call (re-arming itself until then)."""
    count = [0]

    def act() -> None:
        count[0] += 1
        if count[0] < n:
            _pending[2] = act
        else:
            action()

    return act


@pytest.mark.parametrize("op", ["rm", "cp"])
def test_deep_walk_directory_moved_while_closed(root_dir: Path, hook, op: str, resolver: str) -> None:
    """200 levels: the walk keeps fds on only a few (native/tree.c, bn_keep), so when it comes
    back up it reopens level 9 by name from a held ancestor. Moving level 9 aside while the
    walk is at level 150 must stop the walk with a clear error (EAGAIN, "moved or replaced"),
    never reopen something else in its place, and never touch what was moved away."""
    top = root_dir / "t"
    _chain(top, 200)
    level8 = top.joinpath(*["d"] * 8)

    def move_level9() -> None:
        os.rename(level8 / "d", level8 / "moved")
        _chain(level8 / "d", 191)  # an impostor of the same shape: must not be walked into

    hook(2, _after_calls(150, move_level9))
    with Root(root_dir, resolver=resolver) as fs:
        with pytest.raises(OSError) as ei:
            if op == "rm":
                fs.rm("t", recursive=True)
            else:
                fs.cp("t", "copy", recursive=True)
    assert _fired()
    assert ei.value.errno == errno.EAGAIN and "moved or replaced" in str(ei.value), ei.value
    assert ei.value.filename == "t"
    assert (level8 / "moved").is_dir()
    assert len(list(os.walk(level8 / "d"))) == 191  # the impostor is whole


@pytest.mark.parametrize("op", ["rm", "cp"])
def test_walk_fds_are_close_on_exec(root_dir: Path, hook, op: str, resolver: str) -> None:
    """Mid-walk (stage 2), every fd the walker holds on the tree is close-on-exec: a child
    another thread starts meanwhile inherits none of them."""
    import fcntl

    _chain(root_dir / "t", 30)
    leaks: list[str] = []

    def look() -> None:
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
                flags = fcntl.fcntl(int(name), fcntl.F_GETFD)
            except OSError:
                continue
            if target.startswith(str(root_dir)) and not flags & fcntl.FD_CLOEXEC:
                leaks.append(target)

    hook(2, _after_calls(20, look))
    with Root(root_dir, resolver=resolver) as fs:
        if op == "rm":
            fs.rm("t", recursive=True)
        else:
            fs.cp("t", "copy", recursive=True)
    assert _fired()
    assert not leaks, leaks


# -- the one retry policy: count and deadline -------------------------------------------------


@pytest.mark.parametrize("pause", [0.0, 0.003], ids=["count", "deadline"])
def test_rm_gives_up_on_a_directory_refilled_forever(root_dir: Path, hook, resolver: str, pause: float) -> None:
    """An attacker refills the directory ``rm -r`` is emptying every time it looks (stage 2:
    a new subdirectory each time), so the final ``rmdir`` never succeeds. rm gives up under
    the one retry policy (native/internal.h): after ``BN_RETRY_TRIES`` tries, or, when each
    try takes 3 ms, once ``BN_RETRY_MS`` have passed (so after at most 85); the error is
    ``EAGAIN`` with a message naming the policy; what the attacker made is still there."""
    d = root_dir / "d"
    (d / "x").mkdir(parents=True)
    fires = [0]

    def refill() -> None:
        fires[0] += 1
        (d / f"y{fires[0]}").mkdir()
        if pause:
            time.sleep(pause)
        _pending[2] = refill

    hook(2, refill)
    with Root(root_dir, resolver=resolver) as fs:
        with pytest.raises(BlockingIOError) as ei:
            fs.rm("d", recursive=True)
    assert ei.value.errno == errno.EAGAIN and ei.value.filename == "d"
    assert f"{lib.BN_RETRY_TRIES} times or for {lib.BN_RETRY_MS} ms" in str(ei.value)
    tries = fires[0]
    # the count bounds it: each retry lists d again and meets at most the two made since
    assert tries <= 2 * lib.BN_RETRY_TRIES + 2, tries
    if pause:  # each try takes >= 3 ms: the deadline ends it, after fewer tries
        assert tries <= lib.BN_RETRY_MS / (pause * 1000) + 2, tries
    left = os.listdir(d)
    assert left and set(left) <= {f"y{k}" for k in range(1, tries + 1)}, left
