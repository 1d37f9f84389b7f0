"""Watch (DESIGN.md "Watch"): events over every backend, growth, moves, bounds, caps, cleanup,
Landlock, and the race: a watched directory swapped for a link out (the naive
alternative, inotify by path after a realpath check, is caught by the same test).

Deterministic: a test waits until the events it expects have come (generous deadline),
never for a fixed time; "nothing came" is only said of events that would have come
before a marker event the test makes afterwards (one queue, in order).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from _util import EscapeError
from backends import BACKENDS, server_thread
from naive import NaiveWatch
from race_harness import inotify_inodes

WAIT = 20.0  # seconds a test waits for events it expects (a loaded CI machine)


def collect(w: Any, done: Callable[[list[Any]], bool], wait: float = WAIT) -> list[Any]:
    """Events until ``done(events)`` says enough; fails after ``wait`` seconds."""
    out: list[Any] = []
    deadline = time.monotonic() + wait
    while not done(out):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"expected events did not come; got {[(e.kind, e.path) for e in out]}")
        try:
            out.append(w.next(timeout=min(left, 1.0)))
        except TimeoutError:
            continue
    return out


def until_marker(w: Any, root: Path, name: str = "zz-marker") -> list[Any]:
    """Everything up to a marker file created now (what came before it in the one queue)."""
    (root / name).write_bytes(b"")
    evs = collect(w, lambda ev: any(e.path == name and e.kind == "created" for e in ev))
    return evs[:-1] if evs and evs[-1].path == name else evs


def has(evs: Iterable[Any], kind: str, path: Any) -> bool:
    return any(e.kind == kind and e.path == path for e in evs)




def inotify_queued(pid: int | str = "self") -> int:
    """Bytes of events the kernel holds for the process's inotify instances (FIONREAD; a
    daemon's fds are fetched with pidfd_getfd): 0 once it has read everything."""
    import ctypes
    import fcntl
    import struct
    import termios

    total = 0
    base = f"/proc/{pid}/fdinfo"
    pidfd = os.pidfd_open(int(pid)) if pid != "self" else -1
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        for name in os.listdir(base):
            try:
                with open(f"{base}/{name}") as f:
                    if "inotify wd:" not in f.read():
                        continue
            except OSError:
                continue
            fd = int(name) if pidfd < 0 else libc.syscall(438, pidfd, int(name), 0)  # pidfd_getfd
            if fd < 0:
                continue
            try:
                total += struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
            except OSError:
                pass
            finally:
                if pidfd >= 0:
                    os.close(fd)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    return total


def drained(pid: int | str = "self") -> None:
    """Wait until the watcher (a daemon, or this process's) has read all the kernel holds."""
    deadline = time.monotonic() + WAIT
    while inotify_queued(pid):
        assert time.monotonic() < deadline, "the watcher does not read its events"
        time.sleep(0.01)


# -- each kind, over every backend -------------------------------------------------------------


def test_file_events(fs: Any, root_dir: Path) -> None:
    with fs.watch(".") as w:
        p = root_dir / "f"
        p.write_bytes(b"1")                 # created, modified
        os.chmod(p, 0o600)                  # attrib
        os.rename(p, root_dir / "g")        # moved_from, moved_to
        os.unlink(root_dir / "g")           # deleted
        evs = collect(w, lambda ev: has(ev, "deleted", "g"))
    kinds = [(e.kind, e.path, e.is_dir) for e in evs]
    for want in [("created", "f", False), ("modified", "f", False), ("attrib", "f", False),
                 ("moved_from", "f", False), ("moved_to", "g", False), ("deleted", "g", False)]:
        assert want in kinds, kinds
    cookies = {e.kind: e.cookie for e in evs if e.kind.startswith("moved")}
    assert cookies["moved_from"] == cookies["moved_to"] != 0


def test_directory_events_and_types(fs: Any, root_dir: Path) -> None:
    with fs.watch(b".") as w:
        os.mkdir(root_dir / "d")
        os.rename(root_dir / "d", root_dir / "e")
        os.symlink("/etc", root_dir / "link")   # an entry, never followed
        os.rmdir(root_dir / "e")
        evs = collect(w, lambda ev: has(ev, "deleted", b"e"))
    assert all(isinstance(e.path, bytes) for e in evs)
    got = {(e.kind, e.path, e.is_dir) for e in evs}
    assert {("created", b"d", True), ("moved_from", b"d", True), ("moved_to", b"e", True),
            ("created", b"link", False), ("deleted", b"e", True)} <= got


def test_recursive_growth_20_deep(fs: Any, root_dir: Path) -> None:
    """mkdir -p 20 deep and a file at every level: every path reported (the entries a new
    directory already had when its watch landed included)."""
    with fs.watch(".") as w:
        parts = [f"d{i}" for i in range(20)]
        os.makedirs(root_dir.joinpath(*parts))
        want = set()
        for i in range(1, 21):
            rel = "/".join(parts[:i])
            want.add(rel)
            (root_dir / rel / "f").write_bytes(b"x")
            want.add(rel + "/f")
        evs = collect(w, lambda ev: want <= {e.path for e in ev if e.kind == "created"})
    assert all(e.path.startswith("d0") for e in evs)


def test_mkdir_p_then_touch_is_not_lost(fs: Any, root_dir: Path) -> None:
    with fs.watch(".") as w:
        os.makedirs(root_dir / "a/b/c")
        (root_dir / "a/b/c/f").write_bytes(b"")
        collect(w, lambda ev: has(ev, "created", "a/b/c/f"))


def test_moves_inside_are_paired_and_followed(fs: Any, root_dir: Path) -> None:
    os.makedirs(root_dir / "x/sub")
    with fs.watch(".") as w:
        os.rename(root_dir / "x", root_dir / "y")
        (root_dir / "y/sub/new").write_bytes(b"")
        evs = collect(w, lambda ev: has(ev, "created", "y/sub/new"))
    frm = next(e for e in evs if e.kind == "moved_from")
    to = next(e for e in evs if e.kind == "moved_to")
    assert (frm.path, to.path, frm.is_dir) == ("x", "y", True) and frm.cookie == to.cookie


def test_move_out_of_the_watched_tree_stops_its_events(fs: Any, root_dir: Path) -> None:
    os.makedirs(root_dir / "w/sub")
    os.makedirs(root_dir / "elsewhere")
    with fs.watch("w") as w:
        os.rename(root_dir / "w/sub", root_dir / "elsewhere/sub")
        (root_dir / "elsewhere/sub/after").write_bytes(b"")
        (root_dir / "w/marker").write_bytes(b"")
        evs = collect(w, lambda ev: has(ev, "created", "w/marker"))
    assert has(evs, "moved_from", "w/sub")
    assert not any("after" in e.path for e in evs), evs


def test_watching_a_subdirectory_names_paths_from_the_root(fs: Any, root_dir: Path) -> None:
    os.makedirs(root_dir / "p/q")
    with fs.watch("p/q/") as w:
        (root_dir / "p/q/f").write_bytes(b"")
        (root_dir / "p/outside-the-watch").write_bytes(b"")
        (root_dir / "p/q/g").write_bytes(b"")
        evs = collect(w, lambda ev: has(ev, "created", "p/q/g"))
    assert has(evs, "created", "p/q/f") and not any("outside-the-watch" in e.path for e in evs)


def test_not_recursive(fs: Any, root_dir: Path) -> None:
    os.makedirs(root_dir / "sub")
    with fs.watch(".", recursive=False) as w:
        (root_dir / "sub/deep").write_bytes(b"")
        (root_dir / "top").write_bytes(b"")
        evs = collect(w, lambda ev: has(ev, "created", "top"))
    assert not any("deep" in e.path for e in evs)


def test_watching_a_file_sees_an_atomic_save(fs: Any, root_dir: Path) -> None:
    (root_dir / "doc.txt").write_bytes(b"v1")
    with fs.watch("doc.txt") as w:
        (root_dir / "other").write_bytes(b"")
        (root_dir / ".doc.tmp").write_bytes(b"v2")
        os.rename(root_dir / ".doc.tmp", root_dir / "doc.txt")
        with open(root_dir / "doc.txt", "ab") as f:
            f.write(b"!")
        evs = collect(w, lambda ev: has(ev, "modified", "doc.txt"))
    assert has(evs, "moved_to", "doc.txt") and {e.path for e in evs} == {"doc.txt"}


def test_top_deleted_ends_the_watch(fs: Any, root_dir: Path) -> None:
    os.mkdir(root_dir / "t")
    w = fs.watch("t")
    os.rmdir(root_dir / "t")
    evs = list(w)  # ends by itself
    assert has(evs, "deleted", "t")
    w.close()


def test_a_directory_above_the_top_moved_ends_the_watch(fs: Any, root_dir: Path) -> None:
    os.makedirs(root_dir / "a/b")
    w = fs.watch("a/b")
    os.rename(root_dir / "a", root_dir / "a2")
    (root_dir / "a2/b/after").write_bytes(b"")
    evs = list(w)
    assert evs and evs[-1].kind == "moved_from" and evs[-1].path == "a/b"
    assert not any("after" in e.path for e in evs)
    w.close()


def test_bad_arguments(fs: Any, root_dir: Path, outside: Path) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        fs.watch("missing")
    assert ei.value.filename == "missing"
    os.symlink(outside, root_dir / "out")
    with pytest.raises(EscapeError):
        fs.watch("out")
    with pytest.raises(EscapeError):
        fs.watch("../x")
    for bad in (0, 10**9):
        with pytest.raises(ValueError):
            fs.watch(".", max_queue=bad)
    with pytest.raises(TypeError):
        fs.watch(".", max_queue="many")


def test_overflow_once_then_goes_on(fs: Any, root_dir: Path) -> None:
    """A burst with a reader that does not read: one overflow event, then the watch works."""
    os.mkdir(root_dir / "burst")
    with fs.watch(".", max_queue=1000) as w:
        d = os.open(root_dir / "burst", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(20_000):
                os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d))
        finally:
            os.close(d)
        if not hasattr(w, "fileno"):
            drained()  # the daemon (a thread of this process) has read the burst
        evs = collect(w, lambda ev: has(ev, "overflow", "."))
        evs += until_marker(w, root_dir)
        assert [e.kind for e in evs].count("overflow") == 1, len(evs)
        (root_dir / "burst/late").write_bytes(b"")
        collect(w, lambda ev: has(ev, "created", "burst/late"))


# -- bounds and cleanup (the daemon) -------------------------------------------------------------


def _tree(root: Path, n: int) -> None:
    for i in range(n):
        os.makedirs(root / f"d{i}")


def test_caps_give_enospc(root_dir: Path) -> None:
    from beneathd.client import Client

    _tree(root_dir, 10)
    with server_thread(root_dir, max_watches_per_connection=8, max_watches=12) as sock:
        with Client(sock) as c:
            with pytest.raises(OSError) as ei:
                c.watch(".")
            assert ei.value.errno == errno.ENOSPC and "8 directories" in str(ei.value)
            w = c.watch("d0")  # 1 directory
            for i in range(8):
                os.mkdir(root_dir / f"d0/n{i}")  # the 9th directory of this connection
            with pytest.raises(OSError) as ei:
                collect(w, lambda ev: False, wait=WAIT)
            assert ei.value.errno == errno.ENOSPC
            w.close()
        for i in range(6):
            os.makedirs(root_dir / f"e/{i}")
        with Client(sock) as c1, Client(sock) as c2:
            w1 = c1.watch("e")  # 7 directories
            c2.watch("d1").close()
            with pytest.raises(OSError) as ei:
                c2.watch("e")  # 7 + 7 > 12
            assert ei.value.errno == errno.ENOSPC and "daemon" in str(ei.value)
            w1.close()
            _wait(lambda: _watch_ok(c2, "e"))  # the room comes back once the daemon ended w1


def _watch_ok(c: Any, path: str) -> bool:
    try:
        c.watch(path).close()
        return True
    except OSError as e:
        assert e.errno in (errno.ENOSPC, errno.EMFILE)  # (a cap not yet given back)
        return False


def test_closing_removes_every_kernel_watch(root_dir: Path) -> None:
    from beneathd.client import Client

    _tree(root_dir, 30)
    base = len(inotify_inodes())
    with server_thread(root_dir) as sock:
        c = Client(sock)
        w1 = c.watch(".")
        w2 = c.watch("d1")
        deadline = time.monotonic() + WAIT
        while len(inotify_inodes()) < base + 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(inotify_inodes()) == base + 32
        w1.close()
        c.stat(".")  # the cancel went before this
        _wait_count(base + 1)
        c.close()  # the connection goes: w2's watch with it
        _wait_count(base)
        w2.close()  # (nothing left to tell the daemon)
        # and Root: closing the watch closes its inotify instance
        from beneathd.daemon import Root
        with Root(str(root_dir)) as r:
            with r.watch("."):
                assert len(inotify_inodes()) == base + 31
            assert len(inotify_inodes()) == base


def _wait_count(n: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(inotify_inodes()) != n:
        assert time.monotonic() < deadline, (len(inotify_inodes()), n)
        time.sleep(0.01)


def test_daemon_under_landlock(tmp_path: Path) -> None:
    """The real daemon (dropped to nobody, confined by Landlock): watches work, nothing is
    watched outside, and its memory stays bounded under a burst a client does not read."""
    if os.geteuid() != 0:
        pytest.skip("starts the daemon as root")
    from test_daemon import chown_tree, start_daemon

    from beneathd.client import Client

    root = tmp_path / "root"
    root.mkdir()
    _tree(root, 5)
    with start_daemon(tmp_path, root=root) as d:
        assert "landlock" in d.stderr().lower()
        with Client(d.sock) as c, c.watch(".", max_queue=500) as w:
            assert len(inotify_inodes(d.pid)) == 6
            os.makedirs(root / "d0/x/y")
            chown_tree(root)
            collect(w, lambda ev: has(ev, "created", "d0/x/y"))
            rss0 = _rss(d.pid)
            dfd = os.open(root / "d1", os.O_RDONLY | os.O_DIRECTORY)
            try:
                for i in range(100_000):
                    os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd))
            finally:
                os.close(dfd)
            drained(d.pid)
            grew = _rss(d.pid) - rss0
            evs = collect(w, lambda ev: has(ev, "overflow", "."))
            evs += until_marker(w, root)
            assert [e.kind for e in evs].count("overflow") == 1
            assert grew < 32 * 1024 * 1024, grew
        _wait(lambda: len(inotify_inodes(d.pid)) == 0)
        assert d.alive()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _wait(pred: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.01)


# -- the race -------------------------------------------------------------------------------------


IMPLS = [*sorted(BACKENDS), "naive"]


@pytest.mark.parametrize("impl", IMPLS)
def test_swap_watched_directory_for_a_link_out(impl: str, tmp_path: Path) -> None:
    """An attacker flips ``sub`` (a watched directory) with ``sub_link -> outside`` by
    RENAME_EXCHANGE while a writer creates files outside: no event may name an outside
    entry and no kernel watch may ever sit on an outside inode. The naive watch must be
    caught by the same test."""
    import race_harness

    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "inner").mkdir()
    os.mkdir(root / "sub")
    os.symlink(str(outside), root / "sub_link")
    out_inodes = {(os.stat(p).st_ino, os.stat(p).st_dev) for p in (outside, outside / "inner")}
    stop = threading.Event()
    seen_inodes: set[tuple[int, int]] = set()
    swaps = [0]

    def attacker() -> None:
        # in another process, as the race suite's attacker: no GIL between its swaps and
        # the watcher's steps
        bfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            proc = subprocess.Popen([sys.executable, race_harness.__file__, "--attack", str(bfd), "sub", "sub_link",
                                     "0"], pass_fds=[bfd], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdout.readline()
            stop.wait()
            proc.stdin.close()
            swaps[0] = int(proc.stdout.read().strip() or 0)
            proc.wait(30)
        finally:
            os.close(bfd)

    def writer() -> None:
        i = 0
        while not stop.is_set():
            p = outside / "inner" / f"leak-{i}"
            p.write_bytes(b"")
            p.unlink()
            i += 1

    def sampler() -> None:
        while not stop.is_set():
            seen_inodes.update(inotify_inodes())
            time.sleep(0.001)

    events: list[Any] = []
    ctx: Any
    if impl == "naive":
        ctx = NaiveWatch(root)
    else:
        ctx = _backend_watch(impl, root)
    with ctx as w:
        threads = [threading.Thread(target=f, daemon=True) for f in (attacker, writer, sampler)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + (30.0 if impl == "naive" else 2.0)  # naive: until caught
        try:
            while time.monotonic() < deadline:
                try:
                    events.append(w.next(timeout=0.05))
                except TimeoutError:
                    pass
                if impl == "naive" and (seen_inodes & out_inodes or _leaked(events)):
                    break
        finally:
            stop.set()
            for t in threads:
                t.join(10)
    leaked = _leaked(events)
    watched_outside = seen_inodes & out_inodes
    print(f"{impl}: {swaps[0]} swaps, {len(events)} events, {len(leaked)} naming outside, "
          f"{len(watched_outside)} outside inodes watched")
    if impl == "naive":
        assert leaked or watched_outside, "the harness did not catch the naive watch"
    else:
        assert swaps[0] > 100 and seen_inodes  # (the sampler saw the watcher's own watches)
        assert not leaked, leaked[:5]
        assert not watched_outside


def _leaked(events: list[Any]) -> list[Any]:
    return [e for e in events if "leak-" in os.fsdecode(e.path) or "inner" in os.fsdecode(e.path)]


class _backend_watch:
    """A backend and a watch of its root as one context manager."""

    def __init__(self, impl: str, root: Path) -> None:
        self.cm = BACKENDS[impl](root)
        self.w: Any = None

    def __enter__(self) -> Any:
        fs = self.cm.__enter__()
        self.w = fs.watch(".")
        return self.w

    def __exit__(self, *exc: object) -> None:
        self.w.close()
        self.cm.__exit__(*exc)


def test_watches_per_connection_and_other_calls_go_on(root_dir: Path) -> None:
    """Watches run until cancelled: they do not hold the connection's request slots (a
    connection with many open still serves its calls and reads their cancels)."""
    from beneathd.client import Client

    with server_thread(root_dir, max_watch_streams=5, max_inflight=2) as sock, Client(sock) as c:
        ws = [c.watch(".") for _ in range(5)]
        with pytest.raises(OSError) as ei:
            c.watch(".")
        assert ei.value.errno == errno.EMFILE and "the limit is 5" in str(ei.value)
        assert c.listdir(".") == [] and c.stat(".")
        for w in ws:
            w.close()
        _wait(lambda: _watch_ok(c, "."))


def test_a_subdirectory_moved_out_and_deleted_does_not_end_the_watch(fs: Any, root_dir: Path) -> None:
    """(Review finding) a cut-off directory's IN_IGNORED is not the top's."""
    os.makedirs(root_dir / "top/sub")
    os.makedirs(root_dir / "other")
    with fs.watch("top") as w:
        os.rename(root_dir / "top/sub", root_dir / "other/sub")
        os.rmdir(root_dir / "other/sub")
        os.mkdir(root_dir / "top/new")
        evs = collect(w, lambda ev: has(ev, "created", "top/new"))
    assert has(evs, "moved_from", "top/sub") and not has(evs, "deleted", "top")


def test_a_watched_directory_moved_into_a_new_one_is_still_watched(root_dir: Path) -> None:
    """(Review finding) the kernel hands back the watch it already has for a directory
    moved into a new one before the move's events are read: the table is rebuilt (an
    overflow event), the directory stays watched, and the budget counts it once."""
    from beneathd.daemon import Root
    from beneathd.daemon.watch import WatchBudget

    os.makedirs(root_dir / "top/a/deep")
    b = WatchBudget(100, "test")
    with Root(str(root_dir)) as r, r.watch("top", budget=b) as w:
        for i in range(3):
            os.mkdir(root_dir / f"top/n{i}")
            src = root_dir / "top/a" if i == 0 else root_dir / f"top/n{i - 1}/a"
            os.rename(src, root_dir / f"top/n{i}/a")
            (root_dir / f"top/m{i}").write_bytes(b"")
            collect(w, lambda ev, i=i: has(ev, "created", f"top/m{i}"))
        assert b.used == len(w._dirs) == 6  # top, n0..n2, n2/a, n2/a/deep
        (root_dir / "top/n2/a/f").write_bytes(b"")
        (root_dir / "top/n2/a/deep/g").write_bytes(b"")
        collect(w, lambda ev: has(ev, "created", "top/n2/a/f") and has(ev, "created", "top/n2/a/deep/g"))
    assert b.used == 0


def test_watches_started_in_one_burst_do_not_freeze_the_connection(root_dir: Path) -> None:
    """(Review finding) watches counted in flight until their task starts: the reader is
    woken when they stop counting, so a burst of watches at the request limit still lets
    the connection's next call through."""
    import socket

    import msgpack

    with server_thread(root_dir, max_inflight=2) as sock:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(WAIT)
        s.connect(sock)
        for i in (1, 2):
            s.send(b"\x00" + msgpack.packb([0, i, "watch", [b"."]], use_bin_type=True))
        s.send(b"\x00" + msgpack.packb([0, 3, "stat", [b"."]], use_bin_type=True))
        got = set()
        while 3 not in got:
            obj = msgpack.unpackb(s.recv(1 << 20)[1:], raw=False)
            if obj[0] == 1:
                got.add(obj[1])
        s.close()
