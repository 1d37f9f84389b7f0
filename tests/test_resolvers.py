"""The two resolvers (DESIGN.md, "Resolvers"): the emulated one gives openat2's answers.

- Equivalence: every path of up to three components over a tree of files, directories and
  links of every kind (in-tree, outward, absolute, dangling, loops, chains, ``..`` links),
  with and without trailing slashes, under each open flag beneathd uses, resolved by the
  native door (``bn_openat2``) with the kernel's openat2 and with the emulated resolver:
  the same file or the same error, every time.  Creating flags run on two identical trees.
- Races the emulated resolver must notice (the swap hook, stage 4: after each directory
  it steps into): the directory it is in moved out of the root before a ``..``, or before
  the next step down.  Nothing outside is read; the same flips carry a per-component walk
  without the checks (``unchecked_walk`` below) outside, so the flips land.
- Choosing it: ``Root.resolver``, a bad name refused, the daemon's ``--resolver`` logged.
  (The seccomp test, openat2 blocked, is in tests/test_failclosed_daemon.py.)

Every shared suite (behaviour, escape table, race harness, atomic writers, deep trees,
long work, spelling) also runs under the emulated resolver: tests/backends.py has
``root-emulated`` and ``client-emulated``.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from beneathd._native import lib
from beneathd.daemon import Root
from test_swap_hooks import hook  # noqa: F401  (the one bn_py_hook: the swap tests' fixture)

EMU = lib.BN_RESOLVE_EMULATED
XDEV = lib.BN_RESOLVE_NO_XDEV

LINKS = {
    "l_f": "f",
    "l_d": "d",
    "l_dd": "d/e",
    "l_up": "../r/f",
    "l_abs": "/etc",
    "l_loop": "l_loop",
    "l_chain": "l_chain2",
    "l_chain2": "l_f",
    "l_dangling": "nx",
    "l_slash": "d/",
    "l_dot": ".",
    "l_empty_dir": "d/e/..",
    "d/l_parent": "..",
    "d/l_pp": "../..",
    "d/e/l_back": "../../f",
    "d/e/l_fifo": "../../p",
}
NAMES = ["f", "d", "e", "g", "p", "nx", ".", "..", *(k.rpartition("/")[2] for k in LINKS)]


def build(r: Path) -> Path:
    (r / "d" / "e").mkdir(parents=True)
    (r / "f").write_bytes(b"f")
    (r / "d" / "g").write_bytes(b"g")
    (r / "d" / "e" / "h").write_bytes(b"h")
    os.mkfifo(r / "p")
    for name, target in LINKS.items():
        os.symlink(target, r / name)
    return r


def paths() -> Iterator[str]:
    for n in (1, 2, 3):
        for parts in itertools.product(NAMES, repeat=n):
            if n == 3 and sum(p.startswith("l_") for p in parts) > 1:
                continue  # keep the product small; two links in a row are covered at n == 2
            p = "/".join(parts)
            yield p
            if n < 3:
                yield p + "/"
    yield from ("", "//f", "d//g", "d/./e/../g", "d/e/h/", "./f", "l_d/e/l_back", "l_dd/../g")


def outcome(root_fd: int, path: str, flags: int, rx: int, base: str) -> tuple[object, ...]:
    fd = lib.bn_openat2(root_fd, os.fsencode(path), flags, 0o644, rx)
    if fd < 0:
        return ("error", -fd)
    try:
        st = os.fstat(fd)
        where = re.sub(r"#\d+ \(deleted\)$", "#TMPFILE (deleted)", os.readlink(f"/proc/self/fd/{fd}"))
        return ("ok", st.st_mode & 0o170000, os.path.relpath(where, base) if where.startswith(base) else where)
    finally:
        os.close(fd)


READ_FLAGS = {
    "O_PATH": os.O_PATH,
    "O_PATH|O_NOFOLLOW": os.O_PATH | os.O_NOFOLLOW,
    "O_PATH|O_DIRECTORY": os.O_PATH | os.O_DIRECTORY,
    "O_RDONLY": os.O_RDONLY | os.O_NONBLOCK,
    "O_RDONLY|O_NOFOLLOW": os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
    "O_RDONLY|O_DIRECTORY": os.O_RDONLY | os.O_DIRECTORY,
    "O_RDONLY|O_DIRECTORY|O_NOFOLLOW": os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
    "O_WRONLY": os.O_WRONLY | os.O_NONBLOCK,
}
CREATE_FLAGS = {
    "O_CREAT": os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK,
    "O_CREAT|O_EXCL": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "O_CREAT|O_NOFOLLOW": os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
    "O_TMPFILE": os.O_WRONLY | os.O_TMPFILE,
}


def _diff(pairs: Iterator[tuple[str, object, object]]) -> list[tuple[str, object, object]]:
    return [(p, a, b) for p, a, b in pairs if a != b]


@pytest.mark.parametrize("rx", [0, XDEV], ids=["beneath", "no_xdev"])
@pytest.mark.parametrize("flag", sorted(READ_FLAGS))
def test_same_answers_as_openat2(tmp_path: Path, flag: str, rx: int) -> None:
    r = build(tmp_path / "r")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    base = str(r)
    try:
        flags = READ_FLAGS[flag]
        all_paths = list(paths())
        bad = _diff((p, outcome(fd, p, flags, rx, base), outcome(fd, p, flags, rx | EMU, base)) for p in all_paths)
        assert not bad, f"{len(bad)} of {len(all_paths)} differ (path, openat2, emulated): {bad[:20]}"
    finally:
        os.close(fd)


@pytest.mark.parametrize("flag", sorted(CREATE_FLAGS))
def test_same_answers_when_creating(tmp_path: Path, flag: str) -> None:
    """Two identical trees, the same paths in the same order: the same answers and, at the
    end, the same trees (what was created, where)."""
    trees = [build(tmp_path / "a" / "r"), build(tmp_path / "b" / "r")]
    fds = [os.open(t, os.O_PATH | os.O_DIRECTORY) for t in trees]
    try:
        flags = CREATE_FLAGS[flag]
        bad = _diff((p, outcome(fds[0], p, flags, 0, str(trees[0])), outcome(fds[1], p, flags, EMU, str(trees[1])))
                    for p in paths())
        assert not bad, bad[:20]
        listing = [sorted(os.path.relpath(os.path.join(d, n), t) for d, ds, fs in os.walk(t) for n in ds + fs)
                   for t in trees]
        assert listing[0] == listing[1]
    finally:
        for fd in fds:
            os.close(fd)


def test_same_answers_across_a_mount(tmp_path: Path) -> None:
    """A tmpfs mounted inside the root: crossed by default, refused under no_xdev (as a
    mount, -BN_EMOUNT, not as an escape), by both resolvers alike."""
    r = build(tmp_path / "r")
    (r / "m").mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "t", str(r / "m")], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount namespace rights)")
    try:
        (r / "m" / "x").mkdir()
        (r / "m" / "x" / "y").write_bytes(b"y")
        os.symlink("../../f", r / "m" / "x" / "l_out")
        os.symlink("m/x", r / "l_m")
        fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
        try:
            ps = ["m", "m/", "m/x", "m/x/y", "m/x/..", "m/..", "m/x/l_out", "l_m", "l_m/y", "m/x/../../f", "f"]
            for rx in (0, XDEV):
                for flags in (os.O_PATH, os.O_PATH | os.O_NOFOLLOW, os.O_RDONLY | os.O_NONBLOCK):
                    bad = _diff((p, outcome(fd, p, flags, rx, str(r)), outcome(fd, p, flags, rx | EMU, str(r)))
                                for p in ps)
                    assert not bad, (rx, flags, bad)
            assert outcome(fd, "m/x/y", os.O_PATH, XDEV | EMU, str(r)) == ("error", lib.BN_EMOUNT)
            # across the mount and then out: an escape, not a mount, for both (a review's find)
            for p in ("m/../..", "m/x/../../..", "m/../../f"):
                for rx in (XDEV, XDEV | EMU):
                    assert outcome(fd, p, os.O_PATH, rx, str(r)) == ("error", lib.BN_EESCAPE), (p, rx)
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", "-l", str(r / "m")], check=False)


# -- races: the swap hook at stage 4 ----------------------------------------------------------



def _sequence(arm: Callable[[int, Callable[[], None]], None], stage: int, actions: list[Callable[[], None]]) -> None:
    """The k-th call at ``stage`` runs actions[k] (the hook itself fires one action per arming)."""
    if not actions:
        return

    def act() -> None:
        actions[0]()
        _sequence(arm, stage, actions[1:])

    arm(stage, act)


def _nothing() -> None:
    pass


def unchecked_walk(root: Path, path: str, step: Callable[[], None]) -> bytes:
    """What the emulated resolver would be without its checks: one O_NOFOLLOW step per
    component, ``..`` opened and trusted.  ``step`` runs after each directory stepped into,
    as stage 4 does."""
    cur = os.open(root, os.O_PATH | os.O_DIRECTORY)
    parts = path.split("/")
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            nxt = os.open(name, (os.O_RDONLY if last else os.O_PATH | os.O_DIRECTORY) | os.O_NOFOLLOW, dir_fd=cur)
            os.close(cur)
            cur = nxt
            if last:
                return os.read(cur, 100)
            step()
        raise AssertionError("unreachable")
    finally:
        os.close(cur)


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "c").write_bytes(b"inside")
    (root / "a" / "b" / "c").write_bytes(b"inside too")
    out.mkdir()
    return root, out


def _move_a_out(root: Path, out: Path) -> Callable[[], None]:
    """Move ``a`` out of the root and put a look-alike outside secret in its place."""

    def act() -> None:
        os.rename(root / "a", out / "a")
        (out / "a" / "c").write_bytes(b"SECRET")
        (out / "a" / "b" / "c").write_bytes(b"SECRET")

    return act


def test_dotdot_after_the_directory_moved_out(tmp_path: Path, hook: Callable[[int, Callable[[], None]], None]) -> None:  # noqa: F811
    """``a/b/../c``: once the walk is in ``a/b``, ``a`` is moved outside the root, so ``..``
    of ``b`` is outside.  The check after ``..`` sees it; the retry finds no ``a``."""
    root, out = _tree(tmp_path)
    assert unchecked_walk(root, "a/b/../c", _steps(_nothing, _move_a_out(root, out))) == b"SECRET"
    shutil.rmtree(out / "a")
    root, out = _tree(tmp_path / "2")
    with Root(root, resolver="emulated") as fs:
        _sequence(hook, 4, [_nothing, _move_a_out(root, out)])
        with pytest.raises(OSError) as e:
            fs.read_file("a/b/../c")
        assert e.value.errno == errno.ENOENT, e.value
        assert (out / "a" / "c").read_bytes() == b"SECRET"


def test_step_down_after_the_directory_moved_out(tmp_path: Path, hook: Callable[[int, Callable[[], None]], None]) -> None:  # noqa: F811
    """``a/b/c``: once the walk is in ``a``, ``a`` is moved outside; stepping down from it
    goes on outside.  The check at the end sees it."""
    root, out = _tree(tmp_path)
    assert unchecked_walk(root, "a/b/c", _steps(_move_a_out(root, out))) == b"SECRET"
    root, out = _tree(tmp_path / "2")
    with Root(root, resolver="emulated") as fs:
        _sequence(hook, 4, [_move_a_out(root, out)])
        with pytest.raises(OSError) as e:
            fs.read_file("a/b/c")
        assert e.value.errno == errno.ENOENT, e.value


def test_rename_inside_the_root_is_retried(tmp_path: Path, hook: Callable[[int, Callable[[], None]], None]) -> None:  # noqa: F811
    """A rename that stays inside the root makes the check fail too: the whole resolution
    is tried again and finds the file where it now is, or not at all, never elsewhere."""
    root, _ = _tree(tmp_path)
    (root / "z").mkdir()
    with Root(root, resolver="emulated") as fs:
        _sequence(hook, 4, [_nothing, lambda: os.rename(root / "a", root / "z" / "a")])
        with pytest.raises(FileNotFoundError):
            fs.read_file("a/b/../c")
        assert fs.read_file("z/a/b/../c") == b"inside"


@pytest.mark.parametrize("resolver", ["openat2", "emulated"])
def test_a_last_name_swapped_between_a_directory_and_a_link_gets_an_answer_of_either(
        tmp_path: Path, resolver: str) -> None:
    """``a/b`` swapped with ``a/b_link -> outside`` by the race suite's attacker process
    (found by bench/soak.py): listing ``a/b`` and chmod of ``a/b/victim`` (its parent
    opened as a directory) get what the directory gives or an ``EscapeError``, never an
    answer for neither state. The emulated resolver said ``ENOTDIR`` in about 0.3 % of
    such calls: its last name opened with ``O_DIRECTORY|O_NOFOLLOW`` failed on the link,
    and the second look, a directory again by then, returned that failure."""
    import race_harness as rh

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    lay = rh.make_layout(tmp_path, root, outside, "interior")
    before = rh.snapshot(outside)
    dfd, na, nb = lay.swap
    proc = subprocess.Popen([sys.executable, rh.__file__, "--attack", str(dfd), na, nb, "0"], pass_fds=[dfd],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.readline()
    seen: dict[str, int] = {}
    try:
        with Root(root, resolver=resolver) as fs:
            for call in (lambda: fs.listdir("a/b"), lambda: fs.chmod("a/b/victim", 0o640)):
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    try:
                        call()
                        kind = "ok"
                    except OSError as e:  # EscapeError, or EAGAIN if the retry policy gave up
                        kind = type(e).__name__ if e.errno in (errno.EXDEV, errno.EAGAIN) else repr(e)
                    seen[kind] = seen.get(kind, 0) + 1
    finally:
        proc.stdin.close()
        swaps = int(proc.stdout.read().strip() or 0)
        proc.wait(30)
        rh._restore(lay)
        lay.close()
    assert swaps > 0 and seen.get("ok") and seen.get("EscapeError"), (swaps, seen)
    assert set(seen) <= {"ok", "EscapeError", "BlockingIOError"}, seen
    assert rh.snapshot(outside) == before


def _steps(*actions: Callable[[], None]) -> Callable[[], None]:
    queue = list(actions)
    return lambda: queue.pop(0)() if queue else None


# -- choosing it -------------------------------------------------------------------------------


def test_resolver_is_said_and_checked(tmp_path: Path) -> None:
    with Root(tmp_path) as a, Root(tmp_path, resolver="emulated") as b:
        assert (a.resolver, b.resolver) == ("openat2", "emulated")
    with pytest.raises(ValueError, match="resolver"):
        Root(tmp_path, resolver="path")


def test_emulated_follows_links_like_the_kernel(tmp_path: Path) -> None:
    r = build(tmp_path / "r")
    with Root(r, resolver="emulated") as fs:
        assert fs.read_file("l_chain") == b"f"
        assert fs.read_file("l_d/e/l_back") == b"f"
        assert sorted(fs.listdir("l_slash")) == ["e", "g", "l_parent", "l_pp"]
        for p in ("l_abs", "l_up", "d/l_pp/f", "..", "/f"):
            with pytest.raises(OSError) as e:
                fs.stat(p)
            assert e.value.errno == errno.EXDEV, (p, e.value)
        with pytest.raises(OSError) as e:
            fs.stat("l_loop")
        assert e.value.errno == errno.ELOOP
        assert fs.realpath("d/e/l_back") == "f"


# -- a review's findings (kept as regressions) ------------------------------------------------


def test_the_cached_proc_fd_directory_is_not_trusted_by_its_number(tmp_path: Path, hook) -> None:  # noqa: F811
    """The checks read /proc/self/fd through a held directory fd. If that number is closed
    by someone else and reused by a directory an attacker fills with links named like fd
    numbers, the checks must not believe them: the held fd is checked to still be the
    procfs directory it opened, else a fresh one is opened."""
    root, out = _tree(tmp_path)
    rfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        assert lib.bn_emulated_ready(rfd) == 0
        cached = [int(n) for n in os.listdir("/proc/self/fd")
                  if _readlink_or_none(f"/proc/self/fd/{n}", r"^/proc/\d+/fd$")]
        assert cached, "the emulated resolver holds /proc/self/fd"
        spoof = root / "spoof"
        spoof.mkdir()
        sfd = os.open(spoof, os.O_RDONLY | os.O_DIRECTORY)
        for n in cached:  # closed by someone else, and the number reused for the spoof
            os.dup2(sfd, n)
        os.close(sfd)
        taken = cached
        for n in range(3, 256):
            os.symlink(f"/XX{'' if n == rfd else '/a/b'}", spoof / str(n))
        _sequence(hook, 4, [_move_a_out(root, out)])
        fd = lib.bn_openat2(rfd, b"a/b/c", os.O_RDONLY, 0, EMU)
        if fd >= 0:
            data = os.read(fd, 100)
            os.close(fd)
            raise AssertionError(f"read {data!r} from outside the root")
        assert -fd == errno.ENOENT
        for n in taken:
            os.close(n)
    finally:
        os.close(rfd)


def _readlink_or_none(p: str, pattern: str) -> bool:
    try:
        return re.match(pattern, os.readlink(p)) is not None
    except OSError:
        return False


def test_exclusive_create_after_a_rename_mid_walk(tmp_path: Path, hook) -> None:  # noqa: F811
    """``open("a/new", "x")`` while ``a`` is renamed to ``z`` and ``a`` made a link to it:
    openat2 would create ``z/new``; the emulated resolver checks the walk before it creates,
    so it retries and creates it once, through the link, instead of creating it, failing
    the check and then finding its own file (EEXIST)."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)

    def act() -> None:
        os.rename(root / "a", root / "z")
        os.symlink("z", root / "a")

    with Root(root, resolver="emulated") as fs:
        _sequence(hook, 4, [act])
        with fs.open("a/new", "xb") as f:
            f.write(b"made once")
    assert os.listdir(root / "z") == ["new"] and (root / "z" / "new").read_bytes() == b"made once"
