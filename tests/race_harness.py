"""A libpathrs-style symlink-swap race harness.

An attacker thread loops ``renameat2(RENAME_EXCHANGE)`` on two names that sit side by side:
a real directory (or file) inside the root and a symlink to a sentinel tree outside.  A
worker thread meanwhile calls one operation, over and over, on a path that goes *through*
the swapped name.  Whenever the worker's path walk sees the symlink, a confined
implementation must refuse (``EscapeError``) or fail cleanly; an implementation that checks
a path and then acts on it in a second walk (``tests/naive.py``) eventually acts outside.

Escapes are detected two ways:

* the sentinel tree outside is snapshotted (names, modes, sizes, mtimes, link counts,
  owners, contents) before the run and compared after every ``check_every`` calls and at
  the end: any difference is a write escape;
* every read (``stat``, ``read_file``, ``listdir``, ``copy_file``'s/``cp``'s copy) is
  checked for the outside sentinel (its inode, its content, its marker name): a read escape.

Variants (``where``):

``interior``  swap ``root/a/b`` (a directory) with ``root/a/b_link -> ../../outside``;
              operations name ``a/b/<leaf>``.
``final``     swap ``root/a/b/<leaf>`` with ``root/a/b/<leaf>_link -> outside/<leaf>``.
``root``      swap the root directory itself with a sibling symlink to outside while the
              implementation holds it (the held fd must win over the path).

Knobs (environment): ``BENEATHD_RACE_SECONDS`` (per operation and variant, default 0.2 for Root, 0.1 over the daemon),
``BENEATHD_RACE_SWAPS`` (stop once this many swaps were made; overrides the time, for the
long run), ``BENEATHD_RACE_WORKERS`` (worker threads, default 1),
``BENEATHD_RACE_NAIVE_SECONDS`` (budget to catch the naive implementation, default 15),
``BENEATHD_RACE_LOG`` (append one JSON line per run to this file),
``BENEATHD_RACE_ATTACKER`` (``thread``, the default: an attacker thread in this process;
``process``: the swapping loop runs in a child process, truly parallel to the worker).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import platform
import select
import shutil
import stat as _stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from beneathd.protocol import EscapeError

SENTINEL = b"OUTSIDE-SENTINEL-do-not-touch\n"
INSIDE = b"inside-content\n"
MARKER = "OUTSIDE_MARKER"

_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def exchange_at(dfd_a: int, a: bytes, dfd_b: int, b: bytes) -> int:
    """renameat2(RENAME_EXCHANGE); 0 or -errno.  Falls back to a rename pair (not atomic)."""
    if _SYS_RENAMEAT2 is not None:
        r = _libc.syscall(_SYS_RENAMEAT2, dfd_a, a, dfd_b, b, _RENAME_EXCHANGE)
        return 0 if r == 0 else -ctypes.get_errno()
    try:  # pragma: no cover - other architectures
        os.rename(a, b"x.tmp", src_dir_fd=dfd_a, dst_dir_fd=dfd_a)
        os.rename(b, a, src_dir_fd=dfd_b, dst_dir_fd=dfd_a)
        os.rename(b"x.tmp", b, src_dir_fd=dfd_a, dst_dir_fd=dfd_b)
        return 0
    except OSError as e:
        return -(e.errno or errno.EIO)


# ------------------------------------------------------------------------------------
# trees


def snapshot(path: Path) -> dict[str, Any]:
    """Names, modes, sizes, mtimes, link counts, owners and contents (or link text) of
    everything under path, itself included, never following a link (conftest re-exports it)."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rec: tuple[Any, ...] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, st.st_uid)
            if _stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec += (hashlib.sha256(f.read()).hexdigest(),)
            elif _stat.S_ISLNK(st.st_mode):
                rec += (os.readlink(p),)
            out[os.path.relpath(p, path)] = rec
    return out


def _populate(d: Path, content: bytes, marker: bool) -> None:
    """The names every operation works on, in the real b/ and mirrored outside."""
    d.mkdir(parents=True, exist_ok=True)
    for name in ("victim", "src", "u", "r1", "m1", "x1"):
        (d / name).write_bytes(content)
    (d / "x2").write_bytes(content + b"2")
    os.chmod(d / "victim", 0o640)
    (d / "srcdir").mkdir()
    (d / "srcdir" / "file").write_bytes(content)
    (d / "rmd" / "sub").mkdir(parents=True)
    (d / "rmd" / "f1").write_bytes(content)
    (d / "rmd" / "sub" / "f2").write_bytes(content)
    (d / "rd").mkdir()
    if marker:
        (d / MARKER).write_bytes(content)


@dataclass
class Layout:
    tmp: Path
    root: Path
    outside: Path
    where: str
    leaf: str = "victim"
    #: the directory whose names the operations use, held open so preparation never escapes
    bfd: int = -1
    #: what the attacker swaps: (dirfd, name_a, name_b)
    swap: tuple[int, bytes, bytes] = (-1, b"", b"")
    fds: list[int] = field(default_factory=list)
    outside_inodes: set[tuple[int, int]] = field(default_factory=set)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def make_layout(tmp: Path, root: Path, outside: Path, where: str, leaf: str = "victim") -> Layout:
    """root/a/b (real dir with the work names), outside mirrors them (sentinel content)."""
    lay = Layout(tmp, root, outside, where, leaf)
    b = root / "a" / "b"
    _populate(b, INSIDE, marker=False)
    _populate(outside, SENTINEL, marker=True)          # what a/b_link leads to
    _populate(outside / "a" / "b", SENTINEL, marker=True)  # what root/a/b is under a swapped root
    os.symlink("../../" + outside.name, root / "a" / "b_link")
    bfd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
    lay.fds.append(bfd)
    lay.bfd = bfd
    if where == "interior":
        afd = os.open(root / "a", os.O_PATH | os.O_DIRECTORY)
        lay.fds.append(afd)
        lay.swap = (afd, b"b", b"b_link")
    elif where == "final":
        target = os.path.relpath(outside / leaf, b)
        os.symlink(target, f"{leaf}_link", dir_fd=bfd)
        lay.swap = (bfd, leaf.encode(), f"{leaf}_link".encode())
    elif where == "root":
        os.symlink(outside.name, tmp / "rootlink")
        tfd = os.open(tmp, os.O_PATH | os.O_DIRECTORY)
        lay.fds.append(tfd)
        lay.swap = (tfd, root.name.encode(), b"rootlink")
    else:
        raise ValueError(where)
    for dirpath, dirnames, filenames in os.walk(outside):
        for n in [".", *dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, n))
            lay.outside_inodes.add((st.st_dev, st.st_ino))
    return lay


# ------------------------------------------------------------------------------------
# the operations: (call, prepare, read-escape check)


def _ensure_file(bfd: int, name: str, content: bytes = INSIDE) -> None:
    assert "/" not in name, "prep opens one component at a time (never through a swapped link)"
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=bfd)
    except OSError:
        return
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def _rename_back(bfd: int, a: str, b: str) -> None:
    try:
        os.rename(b, a, src_dir_fd=bfd, dst_dir_fd=bfd)
    except OSError:
        _ensure_file(bfd, a)


def _subdir(dfd: int, name: str) -> int | None:
    """mkdir (quietly) and open ``name`` beneath dfd without following a link (prep must
    never itself write outside: the attacker may have swapped ``name`` for a link)."""
    try:
        os.mkdir(name, dir_fd=dfd)
    except OSError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return None


def _make_rmd(bfd: int) -> None:
    rfd = _subdir(bfd, "rmd")
    if rfd is None:
        return
    try:
        _ensure_file(rfd, "f1")
        sfd = _subdir(rfd, "sub")
        if sfd is not None:
            try:
                _ensure_file(sfd, "f2")
            finally:
                os.close(sfd)
    finally:
        os.close(rfd)


def _fix_exchange(bfd: int) -> None:
    """A naive exchange interrupted half way leaves x1.xchg behind: put the pair back."""
    for n in ("x1", "x2"):
        try:
            os.lstat(n, dir_fd=bfd)
        except FileNotFoundError:
            try:
                os.rename("x1.xchg", n, src_dir_fd=bfd, dst_dir_fd=bfd)
            except OSError:
                _ensure_file(bfd, n)


def _mkdir_quiet(bfd: int, name: str) -> None:
    try:
        os.mkdir(name, dir_fd=bfd)
    except OSError:
        pass


def _read_nofollow(bfd: int, name: str) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=bfd)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _write_ctx(fs: Any, p: str) -> None:
    with fs.open(p, "wb") as f:
        f.write(b"inside-open\n")


def _entries_by_fd(bfd: int) -> int:
    """Entries of the real a/b (reached by its fd, whatever its name points to now)."""
    return 1 + sum(len(d) + len(f) for _, d, f, _ in os.fwalk(".", dir_fd=bfd))


def _write_atomic(fs: Any, p: str) -> None:
    with fs.open(p, "wb", atomic=True) as f:
        f.write(b"inside-atomic\n")


@dataclass
class Op:
    name: str
    call: Callable[[Any, int], Any]
    prep: Callable[[int, int], None] | None = None
    #: (result, layout, i) -> True when the call *read* something outside
    leaked: Callable[[Any, Layout, int], bool] | None = None


def _stat_leaked(r: Any, lay: Layout, i: int) -> bool:
    return (r.st_dev, r.st_ino) in lay.outside_inodes


OPS: dict[str, Op] = {o.name: o for o in [
    Op("mkdir", lambda fs, i: fs.mkdir(f"a/b/n{i}")),
    Op("mkdir_parents", lambda fs, i: fs.mkdir(f"a/b/p{i}/q", parents=True)),
    Op("write_file", lambda fs, i: fs.write_file("a/b/victim", b"inside-w\n")),
    Op("open_w", lambda fs, i: _write_ctx(fs, "a/b/victim")),
    Op("open_atomic", lambda fs, i: _write_atomic(fs, "a/b/victim")),
    Op("unlink", lambda fs, i: fs.unlink("a/b/u"), prep=lambda bfd, i: _ensure_file(bfd, "u")),
    Op("rename", lambda fs, i: fs.rename("a/b/r1", "a/b/r2"), prep=lambda bfd, i: _rename_back(bfd, "r1", "r2")),
    Op("exchange", lambda fs, i: fs.exchange("a/b/x1", "a/b/x2"), prep=lambda bfd, i: _fix_exchange(bfd)),
    Op("move", lambda fs, i: fs.move("a/b/m1", "a/b/m2"), prep=lambda bfd, i: _rename_back(bfd, "m1", "m2")),
    Op("chmod", lambda fs, i: fs.chmod("a/b/victim", 0o600 if i % 2 else 0o644)),
    Op("utime", lambda fs, i: fs.utime("a/b/victim", ns=(i, i))),
    Op("truncate", lambda fs, i: fs.truncate("a/b/victim", 4 + i % 2)),
    Op("copy_file", lambda fs, i: fs.copy_file("a/b/src", "a/b/victim"),
       leaked=lambda r, lay, i: _read_nofollow(lay.bfd, "victim") == SENTINEL),
    Op("cp_r", lambda fs, i: fs.cp("a/b/srcdir", f"a/b/c{i}", recursive=True),
       leaked=lambda r, lay, i: _read_nofollow(lay.bfd, f"c{i}/file") == SENTINEL),
    Op("rm_r", lambda fs, i: fs.rm("a/b/rmd", recursive=True), prep=lambda bfd, i: _make_rmd(bfd)),
    Op("rmdir", lambda fs, i: fs.rmdir("a/b/rd"), prep=lambda bfd, i: _mkdir_quiet(bfd, "rd")),
    Op("symlink", lambda fs, i: fs.symlink("t", f"a/b/s{i}")),
    Op("link", lambda fs, i: fs.link("a/b/src", f"a/b/h{i}")),
    Op("mkfifo", lambda fs, i: fs.mkfifo(f"a/b/f{i}")),
    Op("stat", lambda fs, i: fs.stat("a/b/victim"), leaked=_stat_leaked),
    Op("read_file", lambda fs, i: fs.read_file("a/b/victim"), leaked=lambda r, lay, i: r == SENTINEL),
    Op("listdir", lambda fs, i: fs.listdir("a/b"), leaked=lambda r, lay, i: MARKER in r),
    Op("walk", lambda fs, i: list(fs.walk("a/b")),
       leaked=lambda r, lay, i: any(MARKER in fn for _, _, fn in r)),
    Op("du", lambda fs, i: fs.du("a/b"), leaked=lambda r, lay, i: r[1] > _entries_by_fd(lay.bfd)),  # more: outside counted
    # several mutators in one round trip (their failures come back in their slots)
    Op("batch", lambda fs, i: fs.batch([("mkdir", f"a/b/bn{i}"), ("write_file", "a/b/victim", b"inside-b\n"),
                                        ("chmod", "a/b/victim", 0o644), ("truncate", "a/b/victim", 4),
                                        ("symlink", "t", f"a/b/bs{i}"), ("stat", "a/b/victim")]),
       leaked=lambda r, lay, i: isinstance(r[-1], os.stat_result) and _stat_leaked(r[-1], lay, i)),
]}

#: the operations that name the final component ``victim`` (for the ``final`` variant)
FINAL_OPS = ["write_file", "open_w", "chmod", "utime", "truncate", "copy_file", "stat", "read_file"]
#: for ``final`` on directories: rm -r of a swapped subtree, listdir of a swapped dir
FINAL_DIR_OPS = {"rm_r": "rmd", "listdir": "b"}


# ------------------------------------------------------------------------------------


@dataclass
class Result:
    op: str
    where: str
    impl: str
    seconds: float = 0.0
    swaps: int = 0
    calls: int = 0
    escapes: int = 0
    read_escapes: int = 0
    write_escapes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    first_escape_call: int | None = None
    changed: list[Any] = field(default_factory=list)

    def line(self) -> str:
        errs = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items()))
        return (f"{self.impl:7} {self.where:8} {self.op:14} swaps={self.swaps:>8} calls={self.calls:>7} "
                f"escapes={self.escapes} (write={self.write_escapes} read={self.read_escapes}) "
                f"{self.seconds:.2f}s [{errs}]")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def run_race(fs: Any, lay: Layout, op: Op, impl: str, *, seconds: float | None = None,
             stop_on_escape: bool = False, check_every: int = 64,
             call_path: Callable[[Any, int], Any] | None = None) -> Result:
    """Race one operation against the swapping attacker; count swaps, calls and escapes."""
    seconds = _env_float("BENEATHD_RACE_SECONDS", 0.3) if seconds is None else seconds
    want_swaps = int(_env_float("BENEATHD_RACE_SWAPS", 0))
    workers = max(1, int(_env_float("BENEATHD_RACE_WORKERS", 1)))
    res = Result(op.name, lay.where, impl)
    base = snapshot(lay.outside)
    stop = threading.Event()
    lock = threading.Lock()
    swaps = [0]
    dfd, na, nb = lay.swap
    call = call_path or op.call

    mode = os.environ.get("BENEATHD_RACE_ATTACKER", "thread")
    proc: subprocess.Popen[bytes] | None = None

    def attacker() -> None:
        if proc is not None:  # the swapping runs in another process (no GIL in between)
            stop.wait()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            out = proc.stdout.read()
            proc.wait(30)
            swaps[0] = int(out.strip() or 0)
            return
        while not stop.is_set():
            if exchange_at(dfd, na, dfd, nb) == 0:
                swaps[0] += 1

    def record_escape(kind: str, detail: Any) -> None:
        res.escapes += 1
        if kind == "read":
            res.read_escapes += 1
        else:
            res.write_escapes += 1
        if res.first_escape_call is None:
            res.first_escape_call = res.calls
        if len(res.changed) < 5:
            res.changed.append(detail)
        if stop_on_escape:
            stop.set()

    counter = [0]

    def check_outside() -> None:
        nonlocal base
        now = snapshot(lay.outside)
        if now != base:
            record_escape("write", sorted(set(now.items()) ^ set(base.items()))[:6])
            base = now  # count later changes separately

    def worker() -> None:
        while not stop.is_set():
            with lock:
                i = counter[0]
                counter[0] += 1
            if op.prep is not None:
                op.prep(lay.bfd, i)
            try:
                r = call(fs, i)
                kind = "ok"
            except EscapeError:
                kind, r = "EscapeError", None
            except OSError as e:
                kind, r = type(e).__name__, None
            except Exception as e:  # noqa: BLE001 - anything else is a bug (or naive)
                kind, r = type(e).__name__, None
                with lock:
                    if len(res.unexpected) < 5:
                        res.unexpected.append(repr(e))
            with lock:
                res.calls += 1
                res.errors[kind] = res.errors.get(kind, 0) + 1
                if kind == "ok" and op.leaked is not None and op.leaked(r, lay, i):
                    record_escape("read", f"call {i} ({op.name}) read the outside sentinel")
                if stop_on_escape or res.calls % check_every == 0:
                    check_outside()

    if mode == "process":
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--attack", str(dfd), na, nb, str(want_swaps)],
            pass_fds=[dfd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
    t0 = time.monotonic()
    at = threading.Thread(target=attacker, name="attacker", daemon=True)
    ws = [threading.Thread(target=worker, name=f"worker{k}", daemon=True) for k in range(workers)]
    at.start()
    for w in ws:
        w.start()
    try:
        deadline = t0 + seconds
        while not stop.is_set():
            time.sleep(0.02)
            if want_swaps:
                # the attacker process exits by itself after want_swaps swaps
                done = proc.poll() is not None if proc is not None else swaps[0] >= want_swaps
                if done or time.monotonic() - t0 > 3600:
                    break
            elif time.monotonic() >= deadline:
                break
    finally:
        stop.set()
        for w in ws:
            w.join(30)
        at.join(30)
    res.seconds = time.monotonic() - t0
    res.swaps = swaps[0]
    _restore(lay)
    check_outside()
    _log(res)
    return res


def _attack_main(dfd: int, a: bytes, b: bytes, want: int) -> None:
    """The attacker process: swap until stdin closes (or ``want`` swaps), print the count."""
    n = 0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for _ in range(256):
            if exchange_at(dfd, a, dfd, b) == 0:
                n += 1
        if (want and n >= want) or select.select([sys.stdin], [], [], 0)[0]:
            break
    sys.stdout.write(f"{n}\n")
    sys.stdout.flush()


def _restore(lay: Layout) -> None:
    """Put the swapped pair back the right way round (odd number of swaps)."""
    dfd, na, nb = lay.swap
    try:
        st = os.lstat(na, dir_fd=dfd)
    except OSError:
        return
    if _stat.S_ISLNK(st.st_mode):
        exchange_at(dfd, na, dfd, nb)


def _log(res: Result) -> None:
    path = os.environ.get("BENEATHD_RACE_LOG")
    if not path:
        return
    rec = {k: v for k, v in res.__dict__.items() if k != "changed"}
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def inotify_inodes(pid: int | str = "self") -> list[tuple[int, int]]:
    """(ino, dev) of every kernel watch the process holds (its fdinfo inotify lines)."""
    out = []
    base = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(base):
        try:
            with open(f"{base}/{fd}") as f:
                for line in f:
                    if line.startswith("inotify wd:"):
                        kv = dict(x.split(":", 1) for x in line.split()[1:])
                        sdev = int(kv["sdev"], 16)  # the kernel's dev_t: 12 bits major, 20 minor
                        out.append((int(kv["ino"], 16), os.makedev(sdev >> 20, sdev & 0xFFFFF)))
        except OSError:
            continue
    return out


def cleanup(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--attack":
    _attack_main(int(sys.argv[2]), os.fsencode(sys.argv[3]), os.fsencode(sys.argv[4]), int(sys.argv[5]))
