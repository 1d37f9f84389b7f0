"""A long soak (issue 14): N connections mixing every operation against a link-swapping attacker.

    python -m bench.soak [--minutes 10] [--connections 64] [--resolver openat2|emulated]
                         [--procs 2] [--sample 10] [--no-landlock] [--json FILE] [--seed S]

The real daemon (``bench/bench_load.py:DaemonProc``: as root ``--user nobody`` under
Landlock, as in production) serves a root laid out by the race suite
(``tests/race_harness.py:make_layout``, variant ``interior``): ``a/b`` is a real directory
and ``a/b_link -> ../../outside`` a link to a sentinel tree outside the root (the same
names, content ``OUTSIDE-SENTINEL``, and a file named ``OUTSIDE_MARKER``).  The race
suite's attacker process (``race_harness._attack_main``) swaps the two names with
``renameat2(RENAME_EXCHANGE)`` for the whole run, so ``a/b/...`` and ``a/b_link/...``
each name the real directory or the way out, changing under every call.  ``w/`` is a
stable area (one directory per connection, and ``w/inlink -> ../a/b``, an in-tree link
through the swapped name).

``--connections`` blocking ``Client`` connections, one per thread, spread over
``--procs`` client processes (the GIL would otherwise make the client side, not the
daemon, the bottleneck), each loop over a random mix of every method of the API
(``protocol/methods.py``, ``ROOT_API`` and ``stats``), on paths in the attacked area and
in the stable one: open (fd passed back, read, closed; atomic writers), write_file /
read_file (checked), copy_file, cp -r / rm -r of small trees, rename / exchange / move /
link / symlink / unlink / mkdir / rmdir / mkfifo, stat / lstat / exists / listdir /
scandir / realpath / readlink / chmod / chown / utime / truncate, du, walk (a few tuples,
then dropped: the daemon cancels it), watch (set up, a change made, a few events read with
a timeout, closed), batch of 10-50 mixed calls, stats.

An escape is any of: a change in the outside tree (snapshotted before, at every sample
and at the end: names, modes, sizes, mtimes, link counts, owners, contents); a read that
returns outside content (the sentinel bytes, the marker name, an outside inode, a realpath
that is not beneath the root, a watch event naming the marker); a kernel watch of the
daemon on an outside inode (its ``/proc/PID/fdinfo``, at every sample).

Every exception is classified: the documented ones (``FileNotFoundError``,
``FileExistsError``, ``NotADirectoryError``, ``IsADirectoryError``, ``EscapeError``, and
``OSError`` with an errno of :data:`DOCUMENTED_ERRNOS`) are counted per method and class;
anything else (a ``PermissionError`` with ``EACCES`` would be Landlock stopping what the
resolver let through; a ``ConnectionError``, a wrong read-back, ...) is an *undocumented*
error, and the first few are printed with their tracebacks.  Every ``--sample`` seconds a
line gives the daemon's RSS, fd count and counters; at the end the totals and a verdict:
0 escapes, 0 undocumented errors, the daemon never restarted nor logged an internal error,
every method called, RSS growth after warm-up below 20 % (judged on runs of 2 minutes or
more), and the daemon's fds back to their baseline once the clients are gone.

Not part of the pytest suite (``tests/test_bench_smoke.py`` runs it for ~10 s with 4
connections); the figures of the long run are in docs/SECURITY.md ("Soak (issue 14)").
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import errno
import json
import multiprocessing
import os
import pwd
import random
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench.bench_load import IS_ROOT, REPO, DaemonProc, percentile

sys.path.insert(0, os.path.join(REPO, "tests"))
import race_harness as rh  # noqa: E402  (tests/ is not a package; the attacker lives there)

#: OSError errnos a call may end in here, each documented (DESIGN.md, README, SECURITY.md):
#: the tree changing under a call (ENOENT/EEXIST/ENOTDIR/EISDIR/ENOTEMPTY as os would give),
#: EXDEV (escape), ELOOP (a final link where none is followed), EAGAIN (the one retry
#: policy gave up: "may be retried"), EINVAL (a directory renamed into itself, as os
#: does), ENOSPC (the watch caps), EMFILE, ECANCELED (a cancelled call)
DOCUMENTED_ERRNOS = frozenset({
    errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EXDEV, errno.ELOOP,
    errno.EAGAIN, errno.EINVAL, errno.ENOSPC, errno.EMFILE, errno.ECANCELED,
})

#: every method a caller can call (the table's API, internal writer methods excluded)
def api_methods() -> list[str]:
    from beneathd.protocol.methods import METHODS

    return sorted(n for n, m in METHODS.items() if not m.internal)


PREFIXES = ("a/b", "a/b_link")  # the attacked names (each is the real dir or the link out, in turn)


def classify(e: BaseException) -> tuple[str, bool]:
    """(class label, documented?)"""
    from beneathd.protocol import EscapeError

    if isinstance(e, EscapeError):
        return "EscapeError", True
    if isinstance(e, OSError):
        code = errno.errorcode.get(e.errno or 0, str(e.errno))
        return f"{type(e).__name__}({code})", e.errno in DOCUMENTED_ERRNOS
    return type(e).__name__, False


class Escape(Exception):
    """A read that returned something from outside the root."""


# -- one connection's loop ----------------------------------------------------------------


class Worker:
    def __init__(self, sock: str, cid: int, deadline: float, seed: int, outside_inodes: set[tuple[int, int]],
                 owner: tuple[int, int], without: tuple[str, ...] = ()) -> None:
        self.without = without
        self.sock, self.cid, self.deadline = sock, cid, deadline
        self.rnd = random.Random(seed * 1000 + cid)
        self.outside = outside_inodes
        self.owner = owner
        self.calls: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.undocumented: list[str] = []
        self.n_undocumented = 0
        self.escapes: list[str] = []
        self.n_escapes = 0
        self.last = ""
        self.k = 0
        self.mine = f"w/c{self.cid}"
        #: during the first tour (every operation with each of its variants, in the stable
        #: area where it can: every method gets called even in a short run) the variant
        self.forced: int | None = None
        self.lat: dict[str, list[float]] = collections.defaultdict(list)  # seconds per operation

    # a method called through here is counted and names the method an exception is charged to
    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name in ("c",):
            raise AttributeError(name)
        fn = getattr(self.c, name)

        def call(*a: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            self.last = name
            return fn(*a, **kw)
        return call

    # -- checks
    def escape(self, what: str) -> None:
        self.n_escapes += 1
        if len(self.escapes) < 10:
            self.escapes.append(f"c{self.cid} {what}")

    def check_bytes(self, what: str, b: Any) -> None:
        if isinstance(b, (bytes, bytearray)) and rh.SENTINEL in b:
            raise Escape(f"{what} read the outside sentinel")

    def check_names(self, what: str, names: Any) -> None:
        for n in names:
            if rh.MARKER in os.fsdecode(n):
                raise Escape(f"{what} listed the outside marker")

    def check_stat(self, what: str, st: Any) -> None:
        if (st.st_dev, st.st_ino) in self.outside:
            raise Escape(f"{what} returned an outside inode")

    def check_result(self, what: str, r: Any) -> None:
        """A batch slot (or any result): bytes, names, entries, stat results."""
        if isinstance(r, (bytes, bytearray)):
            self.check_bytes(what, r)
        elif isinstance(r, str) and what.startswith("batch realpath") and r.startswith(("/", "..")):
            raise Escape(f"{what} gave {r!r}")
        elif hasattr(r, "st_ino"):
            self.check_stat(what, r)
        elif isinstance(r, list):
            self.check_names(what, [getattr(x, "name", x) for x in r if isinstance(x, (str, bytes)) or hasattr(x, "name")])

    def undoc(self, label: str, tb: str) -> None:
        self.n_undocumented += 1
        if len(self.undocumented) < 5:
            self.undocumented.append(f"c{self.cid} {label}\n{tb}")

    # -- paths
    def P(self) -> str:
        return self.rnd.choice(PREFIXES)

    def attacked(self) -> str:
        """This connection's directory beneath the swapped name."""
        return f"{self.P()}/c{self.cid}"

    def any_dir(self) -> str:
        return self.attacked() if self.forced is None and self.rnd.random() < 0.5 else self.mine

    def pick(self, options: list[Any]) -> Any:
        return self.rnd.choice(options) if self.forced is None else options[self.forced % len(options)]

    def data(self) -> bytes:
        return b"c%d-%d-" % (self.cid, self.k) + os.urandom(self.rnd.randrange(1, 2048))

    # -- the operations (each one or a few calls)
    def op_meta(self) -> None:
        p = self.rnd.choice([f"{self.P()}/victim", f"{self.P()}", f"{self.mine}/f", "w/inlink/victim",
                             f"{self.attacked()}/f", "a"])
        m = self.pick(["stat", "lstat", "exists"])
        if m == "stat":
            self.check_stat(f"stat {p}", self.stat(p))
        elif m == "lstat":
            self.check_stat(f"lstat {p}", self.lstat(p))
        else:
            self.exists(p)

    def op_list(self) -> None:
        p = self.rnd.choice([self.P(), "w/inlink", "a", self.mine])
        if self.pick([True, False]):
            self.check_names(f"listdir {p}", self.listdir(p))
        else:
            self.check_names(f"scandir {p}", [e.name for e in self.scandir(p)])

    def op_links(self) -> None:
        d = self.any_dir()
        self.symlink("../../victim", f"{d}/s")
        self.readlink(f"{d}/s")
        r = self.realpath(self.rnd.choice([f"{self.P()}/victim", "w/inlink/victim", f"{d}/s"]))
        if r.startswith(("/", "..")):
            raise Escape(f"realpath gave {r!r}")
        self.unlink(f"{d}/s")

    def op_readwrite(self) -> None:
        d = self.any_dir()
        p = f"{d}/f"
        data = self.data()
        self.write_file(p, data)
        got = self.read_file(p)
        self.check_bytes(f"read_file {p}", got)
        if got != data:
            raise AssertionError(f"read_file {p} gave {len(got)} bytes, not the {len(data)} just written")

    def op_read_victim(self) -> None:
        p = self.rnd.choice([f"{self.P()}/victim", f"{self.P()}/src", f"{self.P()}/srcdir/file", "w/inlink/src"])
        self.check_bytes(f"read_file {p}", self.read_file(p))

    def op_open(self) -> None:
        r = self.pick(["read", "read", "write", "atomic"])
        if r == "read":
            p = self.rnd.choice([f"{self.P()}/victim", "w/inlink/src", f"{self.mine}/f"])
            with self.open(p, "rb") as f:
                self.last = "open"
                self.check_bytes(f"open {p}", f.read())
        elif r == "write":
            p = f"{self.any_dir()}/o"
            with self.open(p, "wb") as f:
                self.last = "open"
                f.write(self.data())
        else:
            p = f"{self.any_dir()}/at"
            data = self.data()
            with self.open(p, "wb", atomic=True) as f:
                self.last = "open"
                f.write(data)

    def op_tree_meta(self) -> None:
        p = self.rnd.choice([f"{self.P()}/victim", f"{self.mine}/f", f"{self.attacked()}/f"])
        m = self.pick(["chmod", "chown", "utime", "truncate"])
        if m == "chmod":
            self.chmod(p, self.rnd.choice([0o640, 0o644]))
        elif m == "chown":
            self.chown(p, *self.owner)
        elif m == "utime":
            self.utime(p, ns=(self.k, self.k) if self.rnd.random() < 0.5 else None)
        else:
            self.truncate(p, self.rnd.randrange(0, 64))

    def op_dirs(self) -> None:
        d = f"{self.any_dir()}/d{self.k % 4}"
        self.mkdir(f"{d}/x/y", parents=True, exist_ok=True)
        self.rmdir(f"{d}/x/y")
        self.rmdir(f"{d}/x")
        self.rmdir(d)

    def op_rename(self) -> None:
        d = self.any_dir()
        self.write_file(f"{d}/r1", b"r")
        m = self.pick(["rename", "exchange", "move", "link"])
        if m == "rename":
            self.rename(f"{d}/r1", f"{d}/r2", noreplace=self.rnd.random() < 0.3)
            self.unlink(f"{d}/r2")
        elif m == "exchange":
            self.write_file(f"{d}/r2", b"r2")
            self.exchange(f"{d}/r1", f"{d}/r2")
            self.unlink(f"{d}/r2")
        elif m == "move":
            other = self.mine if d != self.mine else self.attacked()
            self.move(f"{d}/r1", f"{other}/m", overwrite=True)
            self.unlink(f"{other}/m")
        else:
            self.link(f"{d}/r1", f"{d}/h")
            self.unlink(f"{d}/h")
        self.unlink(f"{d}/r1", missing_ok=True)

    def op_fifo(self) -> None:
        p = f"{self.any_dir()}/fifo"
        self.mkfifo(p, 0o600)
        self.unlink(p)

    def op_copy(self) -> None:
        if self.rnd.random() < 0.5:  # attacked source, stable destination: a read escape would show in the copy
            src, dst = self.rnd.choice([f"{self.P()}/src", "w/inlink/victim"]), f"{self.mine}/copy"
        else:
            src, dst = f"{self.mine}/tree/t1", f"{self.attacked()}/copy"
        self.copy_file(src, dst)
        if dst.startswith(self.mine):
            self.check_bytes(f"copy_file {src}", self.read_file(dst))

    def op_cp_rm(self) -> None:
        n = self.k % 4
        if self.rnd.random() < 0.5:
            src, dst = f"{self.P()}/srcdir", f"{self.mine}/cp{n}"
        else:
            src, dst = f"{self.mine}/tree", f"{self.attacked()}/cp{n}"
        self.rm(dst, recursive=True, force=True)
        self.cp(src, dst, recursive=True)
        if dst.startswith(self.mine):
            for name in self.listdir(dst):
                p = f"{dst}/{name}"
                if self.lstat(p).st_mode & 0o170000 == 0o100000:
                    self.check_bytes(f"cp -r {src}", self.read_file(p))
        self.rm(dst, recursive=True)

    def op_du(self) -> None:
        self.du(self.rnd.choice(["a", self.P(), self.mine, "w/inlink"]))

    def op_walk(self) -> None:
        top = self.rnd.choice([".", "a", self.P(), "w"])
        g = self.walk(top, top_down=self.rnd.random() < 0.7, follow_symlinks=self.rnd.random() < 0.3)
        try:
            for _, (dp, dns, fns) in zip(range(self.rnd.randrange(1, 30)), g):
                self.last = "walk"
                self.check_names(f"walk {top}", fns)
                self.check_names(f"walk {top}", dns)
        finally:
            g.close()

    def op_watch(self) -> None:
        top = self.rnd.choice(["a", self.attacked(), self.mine])
        with self.watch(top, recursive=self.rnd.random() < 0.7, max_queue=256) as w:
            try:
                self.write_file(f"{top}/c{self.cid}-watched" if top == "a" else f"{top}/watched", b"w")
            except OSError as e:
                self.count_error(e)
            for _ in range(self.rnd.randrange(1, 5)):
                self.last = "watch"
                try:
                    ev = w.next(timeout=0.3)
                except TimeoutError:
                    break
                except StopIteration:
                    break
                if rh.MARKER in os.fsdecode(ev.path):
                    raise Escape(f"watch {top} reported {ev.path!r}")

    def batch_call(self) -> tuple[Any, ...]:
        d = self.any_dir()
        P = self.P()
        k = self.k
        return self.rnd.choice([
            ("stat", f"{P}/victim"), ("lstat", f"{P}/src"), ("exists", f"{d}/f"), ("listdir", P),
            ("scandir", d), ("read_file", f"{P}/victim"), ("read_file", "w/inlink/src"),
            ("write_file", f"{d}/bf{k % 3}", b"batch-%d" % k), ("mkdir", f"{d}/bd", {"exist_ok": True}),
            ("rmdir", f"{d}/bd"), ("chmod", f"{d}/f", 0o644), ("utime", f"{P}/victim"),
            ("truncate", f"{d}/f", 3), ("symlink", "t", f"{d}/bs{k % 5}"), ("unlink", f"{d}/bs{k % 5}",
                                                                            {"missing_ok": True}),
            ("readlink", "w/inlink"), ("realpath", "w/inlink/victim"), ("du", d),
            ("copy_file", f"{P}/src", f"{self.mine}/bcopy"), ("rename", f"{d}/bf0", f"{d}/bf1"),
            ("link", f"{d}/f", f"{d}/bh{k % 3}"), ("rm", f"{d}/bh{k % 3}", {"force": True}),
        ])

    def op_batch(self) -> None:
        calls = [self.batch_call() for _ in range(self.rnd.randrange(10, 51))]
        res = self.batch(calls)
        for call, r in zip(calls, res):
            name = f"batch/{call[0]}"
            self.calls[name] += 1
            if isinstance(r, BaseException):
                self.charge(name, r, "".join(traceback.format_exception_only(type(r), r)))
            else:
                self.check_result(f"batch {call[0]} {call[1]}", r)

    def op_stats(self) -> None:
        s = self.stats()
        if not isinstance(s, dict) or "calls" not in s:
            raise AssertionError(f"stats gave {s!r}")

    OPS: list[tuple[str, int]] = [
        ("meta", 8), ("list", 4), ("links", 3), ("readwrite", 6), ("read_victim", 4), ("open", 5),
        ("tree_meta", 5), ("dirs", 3), ("rename", 4), ("fifo", 1), ("copy", 3), ("cp_rm", 2), ("du", 2),
        ("walk", 2), ("watch", 2), ("batch", 2), ("stats", 1),
    ]

    # -- errors
    def charge(self, method: str, e: BaseException, tb: str) -> None:
        label, documented = classify(e)
        self.errors[f"{method} {label}"] += 1
        if not documented:
            self.undoc(f"{method}: {label}: {e}", tb)

    def count_error(self, e: BaseException) -> None:
        self.charge(self.last, e, traceback.format_exc())

    def setup(self) -> None:
        for p in (f"{self.mine}/tree/sub",):
            self.mkdir(p, parents=True, exist_ok=True)
        self.write_file(f"{self.mine}/tree/t1", b"tree-1")
        self.write_file(f"{self.mine}/tree/sub/t2", b"tree-2")
        self.write_file(f"{self.mine}/f", b"f")
        for _ in range(200):  # through the swapped name: some tries meet the link
            try:
                self.mkdir(f"a/b/c{self.cid}", exist_ok=True)
                return
            except OSError:
                time.sleep(0.01)

    def run(self) -> None:
        from beneathd.client import Client

        names = [n for n, _ in self.OPS if n not in self.without]
        weights = [w for n, w in self.OPS if n not in self.without]
        with Client(self.sock, timeout=120) as c:
            self.c = c
            self.setup()
            tour = [(op, j) for op in names for j in range(4)]
            while time.time() < self.deadline:
                self.k += 1
                if tour:
                    op, self.forced = tour.pop(0)
                else:
                    op, self.forced = self.rnd.choices(names, weights)[0], None
                t = time.perf_counter()
                try:
                    getattr(Worker, f"op_{op}")(self)
                except Escape as e:
                    self.escape(str(e))
                except Exception as e:  # noqa: BLE001 - classified
                    self.count_error(e)
                self.lat[op].append(time.perf_counter() - t)


def _thread(w: Worker) -> None:
    try:
        w.run()
    except Exception as e:  # noqa: BLE001 - connecting or setting up failed
        w.undoc(f"connection: {e!r}", traceback.format_exc())


def _proc_main(args: tuple[str, list[int], float, int, list[tuple[int, int]], tuple[int, int], tuple[str, ...]]
               ) -> dict[str, Any]:
    """One client process: a thread per connection; returns its totals."""
    sock, cids, deadline, seed, outside, owner, without = args
    ws = [Worker(sock, cid, deadline, seed, set(map(tuple, outside)), owner, without)  # type: ignore[arg-type]
          for cid in cids]
    ts = [threading.Thread(target=_thread, args=(w,), daemon=True) for w in ws]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out: dict[str, Any] = {"calls": collections.Counter(), "errors": collections.Counter(), "undocumented": [],
                           "n_undocumented": 0, "escapes": [], "n_escapes": 0, "ops": 0,
                           "lat": collections.defaultdict(list)}
    for w in ws:
        out["calls"].update(w.calls)
        out["errors"].update(w.errors)
        out["undocumented"] += w.undocumented
        out["n_undocumented"] += w.n_undocumented
        out["escapes"] += w.escapes
        out["n_escapes"] += w.n_escapes
        out["ops"] += w.k
        for k, v in w.lat.items():
            out["lat"][k] += v
    return out


# -- the daemon side ----------------------------------------------------------------------


def inotify_inodes(pid: int) -> set[tuple[int, int]]:
    """(dev, ino) of every kernel watch the process holds (race_harness reads its fdinfo)."""
    return {(dev, ino) for ino, dev in rh.inotify_inodes(pid)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--procs", type=int, default=2, help="client processes (connections are threads in them)")
    p.add_argument("--resolver", choices=("openat2", "emulated"), default="openat2")
    p.add_argument("--no-landlock", action="store_true",
                   help="run the daemon without Landlock (the resolver alone stands between the calls and outside)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--without", action="append", default=[], metavar="OP",
                   help="leave an operation of the mix out (repeatable; e.g. watch, to tell its cost apart)")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)

    methods = api_methods()
    extra = ["--resolver", a.resolver] + (["--no-landlock"] if a.no_landlock else [])
    d = DaemonProc(*extra)
    base = Path(d.base)
    root, outside = Path(d.root), base / "outside"
    lay = rh.make_layout(base, root, outside, "interior")
    (root / "w").mkdir()
    os.symlink("../a/b", root / "w" / "inlink")
    d.chown_tree(str(root))
    d.chown_tree(str(outside))  # writable by the daemon's user: an escaped write would land
    owner = (pwd.getpwnam(d.user).pw_uid, pwd.getpwnam(d.user).pw_gid) if IS_ROOT else (os.getuid(), os.getgid())
    before = rh.snapshot(outside)
    changes: list[Any] = []
    watch_escapes: list[Any] = []
    attacker: subprocess.Popen[bytes] | None = None
    report: dict[str, Any] = {}
    try:
        d.start()
        fds0 = d.settle()
        rss0 = d.rss_kib()
        dfd, na, nb = lay.swap
        attacker = subprocess.Popen([sys.executable, rh.__file__, "--attack", str(dfd), na, nb, "0"],
                                    pass_fds=[dfd], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert attacker.stdout is not None and attacker.stdin is not None
        attacker.stdout.readline()  # "ready"
        seconds = a.minutes * 60
        t0 = time.time()
        deadline = t0 + seconds
        procs = max(1, min(a.procs, a.connections))
        shares = [list(range(i, a.connections, procs)) for i in range(procs)]
        outside_l = sorted(lay.outside_inodes)
        print(f"soak: {a.connections} connections in {procs} processes, {a.minutes:g} min, resolver {a.resolver}, "
              f"landlock {'off' if a.no_landlock else 'on' if IS_ROOT else 'n/a (not root)'}; daemon pid {d.pid}, "
              f"fds {fds0}, RSS {rss0 / 1024:.1f} MiB", flush=True)
        samples: list[dict[str, Any]] = []
        from beneathd.client import Client

        mon = Client(d.socket, timeout=60)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx) as ex:
            futs = [ex.submit(_proc_main, (d.socket, s, deadline, a.seed, outside_l, owner, tuple(a.without))) for s in shares]
            while True:
                done, _ = concurrent.futures.wait(futs, timeout=a.sample)
                t = time.time() - t0
                if not d.alive():
                    print("soak: THE DAEMON DIED", flush=True)
                    break
                now = rh.snapshot(outside)
                if now != before:
                    diff = sorted(set(now.items()) ^ set(before.items()))[:6]
                    changes.append(diff)
                    before = now
                bad = inotify_inodes(d.pid) & lay.outside_inodes
                if bad:
                    watch_escapes.append(sorted(bad))
                # the monitor's own calls (one thread of a process that does nothing else, so
                # their times are the daemon's): stats on the loop, a listing in the worker pool
                probe = {}
                try:
                    t1 = time.perf_counter()
                    st = mon.stats()
                    probe["stats_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
                    t1 = time.perf_counter()
                    mon.scandir("w")
                    probe["scandir_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
                except Exception as e:  # noqa: BLE001
                    st = {"error": repr(e)}
                s = {"t": round(t, 1), "rss_kib": d.rss_kib(), "fds": d.fd_count(), "threads": d.threads(),
                     "cpu_s": round(cpu_seconds(d.pid), 1), "stats": st, "probe": probe}
                samples.append(s)
                print(f"[{t:6.1f}s] rss {s['rss_kib'] / 1024:6.1f} MiB  fds {s['fds']:4}  threads {s['threads']:3}  "
                      f"calls {st.get('calls')}  errors {st.get('errors')}  escapes refused {st.get('escapes')}  "
                      f"conns {st.get('connections')}  cpu {s['cpu_s']:.0f} s  probe stats/scandir {probe.get('stats_ms')}/"
                      f"{probe.get('scandir_ms')} ms  outside changes {len(changes)}", flush=True)
                if len(done) == len(futs):
                    break
            results = [f.result() for f in futs]
        mon.close()
        elapsed = time.time() - t0
        assert attacker.stdin is not None and attacker.stdout is not None
        attacker.stdin.close()
        swaps = int(attacker.stdout.read().strip() or 0)
        attacker.wait(30)
        attacker = None
        rh._restore(lay)
        alive = d.alive()
        fds_end = d.wait_fds(fds0, timeout=30) if alive else -1
        rss_end = d.rss_kib() if alive else -1
        after = rh.snapshot(outside)
        if after != before:
            changes.append(sorted(set(after.items()) ^ set(before.items()))[:6])
        log = d.log()
        internal = [ln for ln in log.splitlines() if "internal error" in ln or "Traceback" in ln]
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait(10)
        lay.close()
        d.close()

    calls: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    undocumented: list[str] = []
    n_undoc = n_esc = ops = 0
    escapes: list[str] = []
    lat: dict[str, list[float]] = collections.defaultdict(list)
    for r in results:
        for k, v in r["lat"].items():
            lat[k] += v
        calls.update(r["calls"])
        errors.update(r["errors"])
        undocumented += r["undocumented"]
        n_undoc += r["n_undocumented"]
        escapes += r["escapes"]
        n_esc += r["n_escapes"]
        ops += r["ops"]
    n_esc_total = n_esc + len(changes) + len(watch_escapes)
    total_calls = sum(v for k, v in calls.items() if not k.startswith("batch/"))
    missing = [m for m in methods if calls[m] == 0 and m not in a.without]
    rss = [s["rss_kib"] for s in samples]
    fds = [s["fds"] for s in samples]
    warm_t = min(60.0, seconds * 0.2)
    warm = next((s["rss_kib"] for s in samples if s["t"] >= warm_t), rss[0] if rss else rss0)
    loaded = [s["rss_kib"] for s in samples if s["t"] <= seconds + 1] or rss
    fds_loaded = [s["fds"] for s in samples if s["t"] <= seconds + 1] or fds
    growth = (loaded[-1] - warm) / warm if warm else 0.0
    judged = seconds >= 120
    verdict = {
        "escapes": n_esc_total == 0,
        "undocumented errors": n_undoc == 0,
        "daemon alive, never restarted, no internal error": alive and d.starts == 1 and not internal,
        "every method called": not missing,
        "RSS growth after warm-up < 20%": (growth < 0.20) if judged else None,
        "fds back to baseline": fds_end != -1 and fds_end <= fds0,
    }
    ok = all(v is not False for v in verdict.values())

    print()
    print(f"### Soak: {a.connections} connections x {elapsed / 60:.1f} min, resolver {a.resolver}, "
          f"landlock {'off' if a.no_landlock else 'on' if IS_ROOT else 'n/a'}")
    print()
    print("| method | calls | errors (documented, by class) |")
    print("|---|---:|---|")
    per: dict[str, list[str]] = collections.defaultdict(list)
    for k, v in sorted(errors.items()):
        m, label = k.split(" ", 1)
        per[m].append(f"{label} {v}")
    for m in sorted(calls, key=lambda m: (m.startswith("batch/"), m)):
        print(f"| {m} | {calls[m]} | {', '.join(per.get(m, [])) or '-'} |")
    print()
    print("| operation (one loop step: one to a few calls) | count | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    lat_rows = {}
    for op in sorted(lat):
        v = sorted(lat[op])
        lat_rows[op] = {"n": len(v), "p50_ms": percentile(v, 0.5) * 1e3, "p99_ms": percentile(v, 0.99) * 1e3,
                        "max_ms": v[-1] * 1e3}
        print(f"| {op} | {len(v)} | {lat_rows[op]['p50_ms']:.1f} | {lat_rows[op]['p99_ms']:.1f} | "
              f"{lat_rows[op]['max_ms']:.0f} |")
    print()
    print("| figure | value |")
    print("|---|---:|")
    rows = [
        ("operations (loop iterations)", ops),
        ("calls (batch slots not counted)", total_calls),
        ("calls/s", f"{total_calls / elapsed:.0f}"),
        ("batch slots", sum(v for k, v in calls.items() if k.startswith("batch/"))),
        ("attacker swaps", swaps),
        ("daemon CPU (user + system)", f"{samples[-1]['cpu_s'] if samples else 0:.0f} s of {elapsed:.0f} s"),
        ("daemon's counters (calls / errors / escapes refused)",
         " / ".join(str(samples[-1]["stats"].get(k)) for k in ("calls", "errors", "escapes")) if samples else "-"),
        ("escapes (reads, outside changes, outside watches)", f"{n_esc} / {len(changes)} / {len(watch_escapes)}"),
        ("undocumented errors", n_undoc),
        ("documented errors", sum(errors.values()) - n_undoc),
        ("daemon restarts", d.starts - 1),
        ("daemon internal errors logged", len(internal)),
        ("RSS MiB first / warm / last loaded / max / after", f"{rss0 / 1024:.1f} / {warm / 1024:.1f} / "
         f"{loaded[-1] / 1024:.1f} / {max(rss) / 1024:.1f} / {rss_end / 1024:.1f}" if rss else "-"),
        ("RSS growth after warm-up", f"{growth * 100:+.1f}%" + ("" if judged else " (not judged: < 2 min)")),
        ("fds baseline / max loaded / last loaded / after", f"{fds0} / {max(fds)} / {fds_loaded[-1]} / {fds_end}"
         if fds else "-"),
        ("methods never called", ", ".join(missing) or "none"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")
    print()
    for k, v in verdict.items():
        print(f"- {k}: {'n/a' if v is None else 'PASS' if v else 'FAIL'}")
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}")
    if escapes or changes or watch_escapes:
        print("\nEscapes (first ones):", *escapes, *map(str, changes), *map(str, watch_escapes), sep="\n  ")
    if undocumented:
        print("\nUndocumented errors (first ones):")
        for u in undocumented[:8]:
            print("---", u, sep="\n")
    if internal:
        print("\nDaemon internal errors (first ones):", *internal[:8], sep="\n  ")
    cmd = f"python -m bench.soak --minutes {a.minutes:g} --connections {a.connections} --procs {procs} " \
          f"--resolver {a.resolver}" + (" --no-landlock" if a.no_landlock else "") + \
        "".join(f" --without {w}" for w in a.without)
    print(f"\nCommand: `{cmd}`; daemon: `{' '.join(d.argv()[1:])}`")
    report = {
        "command": cmd, "connections": a.connections, "procs": procs, "minutes": a.minutes, "elapsed_s": elapsed,
        "resolver": a.resolver, "landlock": IS_ROOT and not a.no_landlock, "ops": ops, "calls": dict(calls),
        "errors": dict(errors), "undocumented": n_undoc, "undocumented_samples": undocumented,
        "escapes": {"reads": n_esc, "outside_changes": changes, "outside_watches": watch_escapes,
                    "samples": escapes},
        "swaps": swaps, "restarts": d.starts - 1, "internal_errors": internal, "rss_kib_start": rss0,
        "rss_kib_warm": warm, "rss_kib_end": rss_end, "fds_start": fds0, "fds_end": fds_end, "samples": samples,
        "missing_methods": missing, "latency": lat_rows, "verdict": {k: v for k, v in verdict.items()}, "ok": ok,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
