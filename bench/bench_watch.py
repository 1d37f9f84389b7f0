"""watch: event latency from a write to the event reaching a ``Client``, and setting up a
recursive watch on a 10k-directory tree, each beside raw inotify in this process.

Latency: a file ``lat/f`` held open; each sample timestamps, ``pwrite``\\ s one byte (an
``IN_MODIFY``) and waits for the ``modified`` event naming it; also a new file created
each sample (the ``created`` event). Contenders: ``Client.watch("lat")`` through the real
daemon (``python -m beneathd.daemon``, Landlock on, as ``nobody`` when run as root),
``Root.watch("lat")`` in this process and a raw inotify instance in this process
(``bn_inotify_init`` + ``inotify_add_watch`` by path through ctypes, the same mask,
``poll`` + ``os.read``). Each contender's watch is set up (untimed) at the start of its
round and closed at its end, so only one of them sees the writes; ``--rounds`` interleaved
rounds of ``--n`` samples; p50 / p99 over all samples, the spread of the rounds' p50s.

Setup: ``--fanout`` x ``--fanout`` directories (100 x 100: 10,100 below the top; ``--files``
empty files in each leaf, none by default), on a
tmpfs mounted for the run when run as root (else the file system of ``--dir``), warm in the
dentry cache. ``Client.watch(".")`` is timed until it returns (it returns once the daemon's
watch is in place), with the daemon's VmRSS before / with the watch and its inotify watch
count (``inotify wd:`` lines in ``/proc/PID/fdinfo``); beside it ``Root.watch(".")`` and a
naive ``os.walk`` + ``inotify_add_watch(path)`` in this process. Interleaved repeats,
medians; every watch closed (and the daemon's kernel watches seen gone) between samples.

    python -m bench.bench_watch [--quick] [--n 100] [--rounds 5] [--fanout 100] [--files 0] [--repeats 5]
                                [--one-cpu] [--disk] [--no-landlock] [--dir DIR]
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import statistics
import struct
import subprocess
import sys
import time
from typing import Any, Callable

from bench._util import _fs_type as _fs, base_parser, fmt_ns, fmt_s, md_table, quantile, verdict
from bench.bench_load import DaemonProc

LATENCY_GOAL_NS = 1e6  # p50 under 1 ms
_HDR = struct.Struct("iIII")
IN_ONLYDIR = 0x01000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int


def add_watch(ifd: int, path: str | bytes, mask: int) -> int:
    wd = _libc.inotify_add_watch(ifd, os.fsencode(path), mask)
    if wd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return wd


def inotify_wds(pid: int | str, fd: int | None = None) -> int:
    """Kernel watches held by ``pid`` (all its inotify fds, or only ``fd``)."""
    d = f"/proc/{pid}/fdinfo"
    n = 0
    for name in ([str(fd)] if fd is not None else os.listdir(d)):
        try:
            with open(os.path.join(d, name), "rb") as f:
                n += sum(1 for line in f if line.startswith(b"inotify wd:"))
        except OSError:
            pass
    return n


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_wds(pid: int, target: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    n = inotify_wds(pid)
    while n > target and time.monotonic() < deadline:
        time.sleep(0.01)
        n = inotify_wds(pid)
    return n


class RawInotify:
    """One inotify instance in this process watching one directory by path."""

    def __init__(self, path: str, mask: int) -> None:
        from beneathd._native import lib

        fd = lib.bn_inotify_init()
        if fd < 0:
            raise OSError(-fd, os.strerror(-fd))
        self.fd = fd
        self.wd = add_watch(fd, path, mask)
        self.buf: list[tuple[int, bytes]] = []

    def wait_for(self, mask: int, name: bytes) -> None:
        while True:
            while self.buf:
                m, n = self.buf.pop(0)
                if m & mask and n == name:
                    return
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                select.select([self.fd], [], [])
                continue
            off = 0
            while off < len(data):
                _, m, _, ln = _HDR.unpack_from(data, off)
                self.buf.append((m, data[off + 16:off + 16 + ln].rstrip(b"\0")))
                off += 16 + ln

    def close(self) -> None:
        os.close(self.fd)


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--n", type=int, default=None, help="latency samples per contender per round")
    p.add_argument("--rounds", type=int, default=None, help="interleaved latency rounds")
    p.add_argument("--fanout", type=int, default=None, help="the tree: fanout x fanout directories")
    p.add_argument("--files", type=int, default=0, help="empty files in each leaf directory of the tree")
    p.add_argument("--one-cpu", action="store_true",
                   help="pin the daemon and this process to CPU 0 for the latency part")
    p.add_argument("--disk", action="store_true",
                   help="keep the root on the file system of --dir even when run as root (no tmpfs)")
    p.add_argument("--no-landlock", dest="daemon_args", action="store_const", const=["--no-landlock"], default=[],
                   help="serve without Landlock (to see what it costs)")
    a = p.parse_args()
    n = a.n or (50 if a.quick else 100)
    rounds = a.rounds or (3 if a.quick else 5)
    fanout = a.fanout or (20 if a.quick else 100)
    repeats = a.repeats or (3 if a.quick else 5)

    from beneathd.client import Client
    from beneathd.daemon import Root
    from beneathd.daemon.watch import _MASK, IN_CREATE, IN_MODIFY

    mask = _MASK | IN_ONLYDIR  # what bn_watch_fd places on every directory
    d = DaemonProc("--no-journal", *a.daemon_args, base=None if a.dir is None else os.path.join(a.dir, "bench-watch"))
    mounted = False
    where = "?"
    lat_rows: list[list[object]] = []
    setup_rows: list[list[object]] = []
    notes: list[str] = []
    try:
        if os.geteuid() == 0 and not a.disk:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", d.root]).returncode == 0
        where = "a tmpfs" if mounted else f"the file system of the run directory ({_fs(d.root)}, {d.base})"
        lat = os.path.join(d.root, "lat")
        os.mkdir(lat)
        with open(os.path.join(lat, "f"), "wb"):
            pass
        tree = os.path.join(d.root, "tree")
        os.mkdir(tree)
        for i in range(fanout):
            sub = os.path.join(tree, f"d{i:03}")
            os.mkdir(sub)
            for j in range(fanout):
                leaf = os.path.join(sub, f"d{j:03}")
                os.mkdir(leaf)
                for m in range(a.files):
                    os.close(os.open(os.path.join(leaf, f"f{m:03}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        ndirs = fanout + fanout * fanout  # below tree/
        d.chown_tree(d.root)
        d.start()
        mine = os.sched_getaffinity(0)
        if a.one_cpu:
            os.sched_setaffinity(d.pid, {0})
            os.sched_setaffinity(0, {0})
        c = Client(d.socket, timeout=120)
        root = Root(d.root)
        d_idle_wds = inotify_wds(d.pid)
        try:
            # -- latency ---------------------------------------------------------------------
            fd = os.open(os.path.join(lat, "f"), os.O_WRONLY)
            seq = [0]

            def modify() -> bytes:
                os.pwrite(fd, b"x", 0)
                return b"f"

            def create() -> bytes:
                seq[0] += 1
                name = f"c{seq[0]:06}"
                os.close(os.open(os.path.join(lat, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return name.encode()

            def opened(s: str) -> tuple[Callable[[str, bytes], None], Callable[[], None]]:
                """The contender's watch on ``lat``: (wait for the event (kind, name), close)."""
                if s == subjects[2]:
                    r = RawInotify(lat, mask)
                    return (lambda kind, name: r.wait_for(IN_MODIFY if kind == "modified" else IN_CREATE, name)), r.close
                w: Any = c.watch("lat", recursive=False) if s == subjects[0] else root.watch("lat", recursive=False)

                def wait(kind: str, name: bytes) -> None:
                    want = "lat/" + name.decode()
                    while True:
                        ev = w.next(10)
                        if ev.kind == kind and ev.path == want:
                            return
                return wait, w.close

            def sample(wait: Callable[[str, bytes], None], act: Callable[[], bytes], kind: str, count: int) -> list[int]:
                out = []
                pc = time.perf_counter_ns
                for _ in range(count):
                    t = pc()
                    wait(kind, act())
                    out.append(pc() - t)
                return out

            subjects = ["Client.watch (daemon)", "Root.watch (in-process)", "raw inotify (in-process)"]
            kinds: list[tuple[str, Callable[[], bytes], str]] = [
                ("modified", modify, "pwrite 1 byte to `lat/f` -> `modified` event"),
                ("created", create, "create `lat/cNNNNNN` -> `created` event")]
            samples: dict[tuple[str, str], list[int]] = {(k, s): [] for k, _, _ in kinds for s in subjects}
            round_p50: dict[tuple[str, str], list[float]] = {(k, s): [] for k, _, _ in kinds for s in subjects}
            for rnd in range(-1, rounds):  # round -1: warm-up, not kept
                order = subjects[rnd % 3:] + subjects[:rnd % 3]
                if rnd % 2:
                    order.reverse()
                for s in order:
                    wait, close = opened(s)
                    try:
                        for kind, act, _ in kinds:
                            sample(wait, act, kind, 10)  # warm this contender for this kind
                            gc.collect()
                            gc.disable()
                            try:
                                out = sample(wait, act, kind, n)
                            finally:
                                gc.enable()
                            if rnd >= 0:
                                samples[(kind, s)] += out
                                round_p50[(kind, s)].append(statistics.median(out))
                    finally:
                        close()
                    if s == subjects[0]:
                        wait_wds(d.pid, d_idle_wds)  # the daemon's watch gone before the next round
            os.close(fd)
            for kind, _, label in kinds:
                raw = statistics.median(samples[(kind, subjects[2])])
                for s in subjects:
                    xs = samples[(kind, s)]
                    p50, p99 = statistics.median(xs), quantile(xs, 0.99)
                    rp = round_p50[(kind, s)]
                    goal = s == subjects[0] and kind == "modified"
                    lat_rows.append([f"event latency p50: {label}", s, fmt_ns(p50), fmt_ns(p99),
                                     f"{fmt_ns(min(rp))} .. {fmt_ns(max(rp))}", f"{p50 / raw:.1f}x",
                                     f"p50 {fmt_ns(p50)}" if goal else "-", "1 ms" if goal else "-",
                                     verdict(p50 / LATENCY_GOAL_NS, 1.0) if goal else "-"])
            if a.one_cpu:
                os.sched_setaffinity(d.pid, mine)
                os.sched_setaffinity(0, mine)

            # -- setup of a recursive watch on the tree ----------------------------------------
            res: dict[str, dict[str, list[float]]] = {}

            def rec(s: str, **kv: float) -> None:
                for key, v in kv.items():
                    res.setdefault(s, {}).setdefault(key, []).append(v)

            def setup_client() -> None:
                before = d.rss_kib()
                t0 = time.perf_counter_ns()
                w = c.watch(".")
                t1 = time.perf_counter_ns()
                after = d.rss_kib()
                wds = inotify_wds(d.pid) - d_idle_wds
                w.close()
                wait_wds(d.pid, d_idle_wds)
                rec("Client.watch(\".\") (daemon)", ns=t1 - t0, wds=wds, rss_before=before, rss_after=after)

            def setup_root() -> None:
                gc.collect()
                before = rss_kib()
                t0 = time.perf_counter_ns()
                w = root.watch(".")
                t1 = time.perf_counter_ns()
                after = rss_kib()
                wds = inotify_wds("self", w.fileno())
                w.close()
                rec("Root.watch(\".\") (in-process)", ns=t1 - t0, wds=wds, rss_before=before, rss_after=after)

            def setup_naive() -> None:
                from beneathd._native import lib

                gc.collect()
                before = rss_kib()
                t0 = time.perf_counter_ns()
                ifd = lib.bn_inotify_init()
                wds = set()
                for dp, _, _ in os.walk(d.root):
                    wds.add(add_watch(ifd, dp, mask))
                t1 = time.perf_counter_ns()
                after = rss_kib()
                count = inotify_wds("self", ifd)
                assert count == len(wds), (count, len(wds))
                os.close(ifd)
                rec("os.walk + inotify_add_watch(path) (in-process)", ns=t1 - t0, wds=count,
                    rss_before=before, rss_after=after)

            cases = [setup_client, setup_root, setup_naive]
            first_rss = d.rss_kib()
            for rnd in range(-1, repeats):  # round -1: warm-up (dentries, the daemon's first watch)
                turn = cases[rnd % 3:] + cases[:rnd % 3]
                if rnd % 2:
                    turn.reverse()
                for fn in turn:
                    fn()
                if rnd == -1:
                    warm = {k: (v["rss_before"][0], v["rss_after"][0]) for k, v in res.items()}
                    res.clear()
            base = statistics.median(res["os.walk + inotify_add_watch(path) (in-process)"]["ns"])
            for s, v in res.items():
                ns = v["ns"]
                delta = [b - a_ for a_, b in zip(v["rss_before"], v["rss_after"])]
                setup_rows.append([f"recursive watch setup, {ndirs + 3:,} directories", s, fmt_s(statistics.median(ns)),
                                   f"{fmt_s(min(ns))} .. {fmt_s(max(ns))}", f"{statistics.median(ns) / base:.2f}x",
                                   f"{int(statistics.median(v['wds'])):,}",
                                   f"{statistics.median(v['rss_before']) / 1024:.1f} -> "
                                   f"{statistics.median(v['rss_after']) / 1024:.1f} MiB "
                                   f"(+{statistics.median(delta) / 1024:.1f})"])
            last_rss = d.rss_kib()
            b, w_ = warm['Client.watch(".") (daemon)']
            rb, rw = warm['Root.watch(".") (in-process)']
            notes.append(f"The first watch of the tree (the warm-up round): the daemon's VmRSS {b / 1024:.1f} -> "
                         f"{w_ / 1024:.1f} MiB (+{(w_ - b) / 1024:.1f}), this process's for Root.watch {rb / 1024:.1f} -> "
                         f"{rw / 1024:.1f} MiB (+{(rw - rb) / 1024:.1f}); the later rows' deltas are smaller: they "
                         f"reuse memory that closed watches gave back (once the cyclic garbage collector freed their "
                         f"directory tables), which the process keeps. The daemon's VmRSS after the latency part {first_rss / 1024:.1f} MiB, after "
                         f"the setup rounds, every watch closed, {last_rss / 1024:.1f} MiB. (The kernel's memory for the "
                         f"watches is not in any VmRSS.)")
        finally:
            c.close()
            root.close()
    finally:
        d.stop()
        if mounted:
            subprocess.run(["umount", d.root], check=False)
        subprocess.run(["rm", "-rf", d.base], check=False)

    print("### Watch\n")
    flags = "".join(f" {f}" for f, on in (("--quick", a.quick), ("--one-cpu", a.one_cpu), ("--disk", a.disk),
                                          ("--no-landlock", bool(a.daemon_args))) if on)
    print(f"`python -m bench.bench_watch{flags}`: the real daemon (Landlock {'off' if a.daemon_args else 'on'}), "
          f"the root on {where}.\n")
    print(f"Event latency: from just before the write to the event in the caller's hands; {rounds} interleaved rounds "
          f"of {n} samples per contender and kind (each contender's watch set up untimed before its round, closed "
          f"after); p50 / p99 over all samples; the rounds' p50 spread; p50 against the raw inotify instance; "
          f"{'daemon and caller pinned to CPU 0' if a.one_cpu else 'daemon and caller unpinned'}.\n")
    print(md_table(["operation", "subject", "p50", "p99", "round p50 min .. max", "vs raw inotify", "ratio", "goal",
                    "verdict"], lat_rows))
    files = f", {a.files} empty files in each leaf ({fanout * fanout * a.files:,} files)" if a.files else ""
    print(f"\nRecursive watch setup: a {fanout} x {fanout} tree of directories{files} (+ the root and `lat/`), `watch(\".\")` "
          f"until it returns (the daemon's kernel watches are in place then), {repeats} interleaved repeats after a "
          f"warm-up round; medians; kernel watches counted from `/proc/PID/fdinfo`; VmRSS of the daemon for the "
          f"Client row, of this process for the in-process rows.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "vs naive", "kernel watches",
                    "VmRSS before -> with the watch (median delta)"], setup_rows))
    if notes:
        print("\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
