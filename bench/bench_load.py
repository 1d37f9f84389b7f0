"""Load: N concurrent clients pipelining a mix of operations against a real daemon.

    python -m bench.bench_load [--clients 64] [--seconds 60] [--depth 4] [--procs 2] [--quick]

Starts the real daemon (``python -m beneathd.daemon``; as root with ``--user nobody
--allow-uid 0`` and a root owned by nobody, as in production), then runs ``--clients``
``AsyncClient`` connections spread over ``--procs`` client processes.  Each client runs
``--depth`` lanes concurrently on its one connection (so requests are pipelined and
replies come back out of order); a lane repeats

    mkdir d; write_file d/f; stat d/f; read_file d/f (checked); listdir d;
    rename d/f d/g; stat d/g; unlink d/g; rmdir d

on names of its own, so every call is expected to succeed: any exception is an error.
It prints a Markdown table: per-operation count and p50/p95/p99/max latency, total ops/s,
errors, and the daemon's RSS and open fds before/after (``/proc/PID``).

This module also holds the helpers the reliability tests share (``tests/test_load.py``,
``tests/test_fuzz.py``, ``tests/test_faults.py`` import it): :class:`DaemonProc` starts,
measures, SIGKILLs and restarts the real daemon, :class:`Prober` is a well-behaved client
recording its latencies in a thread, and :func:`run_load` is the load engine.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DaemonProc", "Prober", "LoadResult", "run_load", "percentile", "format_table", "main"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


# -- the real daemon as a child process ------------------------------------------------------


class DaemonProc:
    """The real CLI daemon on a fresh root and socket in a private temporary directory.

    As root: the base directory is 0755 (traversable by nobody), the root is owned by
    ``nobody`` and the daemon runs ``--user nobody --allow-uid 0``.  Not as root: it runs
    as the caller.  ``extra`` adds CLI flags (e.g. ``--max-connections 16``).
    """

    def __init__(self, *extra: str, base: str | None = None, user: str = "nobody",
                 env: dict[str, str] | None = None) -> None:
        self.extra = list(extra)
        self.user = user
        self.env = env
        self.own_base = base is None
        self.base = base or tempfile.mkdtemp(prefix="beneathd-rel-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.root = os.path.join(self.base, "root")
        self.socket = os.path.join(self.base, "sock")
        self.log_path = os.path.join(self.base, "daemon.log")
        if not os.path.isdir(self.root):
            os.mkdir(self.root)
            self.chown(self.root)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ownership of things the test puts into the root (so the daemon may replace them)
    def chown(self, path: str) -> None:
        if IS_ROOT:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def chown_tree(self, path: str) -> None:
        if IS_ROOT:
            pw = pwd.getpwnam(self.user)
            for dp, dns, fns in os.walk(path):
                os.lchown(dp, pw.pw_uid, pw.pw_gid)
                for n in dns + fns:
                    os.lchown(os.path.join(dp, n), pw.pw_uid, pw.pw_gid)

    def argv(self) -> list[str]:
        a = [sys.executable, "-m", "beneathd.daemon", "--root", self.root, "--socket", self.socket]
        if IS_ROOT:
            a += ["--user", self.user, "--allow-uid", "0"]
        return a + self.extra

    def start(self, timeout: float = 30.0) -> "DaemonProc":
        log = open(self.log_path, "ab")
        mark = log.tell()
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self.env, cwd="/")
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log()[mark:]}")
            if "serving " in self.log()[mark:] and self._connectable():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not become ready: {self.log()[mark:]}")

    def _connectable(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fds(self) -> dict[str, str]:
        out = {}
        d = f"/proc/{self.pid}/fd"
        for n in os.listdir(d):
            try:
                out[n] = os.readlink(os.path.join(d, n))
            except OSError:
                pass
        return out

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def wait_fds(self, target: int, timeout: float = 10.0) -> int:
        """Poll until the daemon's fd count is at most ``target``; returns the last count."""
        deadline = time.monotonic() + timeout
        n = self.fd_count()
        while n > target and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.fd_count()
        return n

    def settle(self) -> int:
        """One round trip (so trio's own fds exist), then the fd count with no client."""
        from beneathd.client import Client

        with Client(self.socket, timeout=30) as c:
            c.exists(".")
            c.listdir(".")  # a worker thread hop too
        last = -1
        n = self.fd_count()
        deadline = time.monotonic() + 5
        while n != last and time.monotonic() < deadline:
            time.sleep(0.1)
            last, n = n, self.fd_count()
        return n

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> "DaemonProc":
        if self.alive():
            self.kill9()
        # the reaper removes a SIGKILLed daemon's socket file; wait for it so the new
        # daemon does not find a live-looking stale socket
        deadline = time.monotonic() + 5
        while os.path.exists(self.socket) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        if self.own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "DaemonProc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a well-behaved client, measured ----------------------------------------------------------


class Prober:
    """A thread doing stat/write_file/read_file/listdir in a loop on its own connection,
    recording each call's latency; every call is expected to succeed."""

    def __init__(self, socket_path: str, name: str = "probe", pause: float = 0.002) -> None:
        self.path = socket_path
        self.name = name
        self.pause = pause
        self.lat: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"prober-{name}", daemon=True)

    def _run(self) -> None:
        from beneathd.client import Client

        try:
            c = Client(self.path, timeout=30)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"connect: {e!r}")
            return
        with c:
            try:
                c.mkdir(self.name, exist_ok=True)
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"mkdir: {e!r}")
            i = 0
            while not self._stop.is_set():
                i += 1
                data = b"%d" % i
                for op in ("write", "stat", "read", "listdir"):
                    t0 = time.perf_counter()
                    try:
                        if op == "write":
                            c.write_file(f"{self.name}/f", data)
                        elif op == "stat":
                            c.stat(f"{self.name}/f")
                        elif op == "read":
                            got = c.read_file(f"{self.name}/f")
                            if got != data:
                                self.errors.append(f"read back {got!r}, wrote {data!r}")
                        else:
                            c.listdir(self.name)
                    except Exception as e:  # noqa: BLE001
                        self.errors.append(f"{op}: {e!r}")
                    self.lat.append(time.perf_counter() - t0)
                if self.pause:
                    time.sleep(self.pause)

    def start(self) -> "Prober":
        self._thread.start()
        return self

    def stop(self) -> "Prober":
        self._stop.set()
        self._thread.join(60)
        return self

    def summary(self) -> dict[str, float]:
        s = sorted(self.lat)
        return {"calls": len(s), "p50_ms": percentile(s, 0.5) * 1e3, "p99_ms": percentile(s, 0.99) * 1e3,
                "max_ms": (s[-1] if s else float("nan")) * 1e3}

    def __enter__(self) -> "Prober":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the load engine --------------------------------------------------------------------------

OPS = ("mkdir", "write_file", "stat", "read_file", "listdir", "rename", "stat2", "unlink", "rmdir")


async def _clients(path: str, first: int, count: int, depth: int, seconds: float,
                   size: int) -> tuple[dict[str, list[float]], int, list[str]]:
    import trio

    from beneathd.client import AsyncClient

    lat: dict[str, list[float]] = {op: [] for op in OPS}
    errors: list[str] = []
    nerr = 0
    payload = os.urandom(size)
    deadline = time.monotonic() + seconds

    async def timed(op: str, coro_fn: Any, *args: Any, **kw: Any) -> Any:
        nonlocal nerr
        t0 = time.perf_counter()
        try:
            r = await coro_fn(*args, **kw)
        except Exception as e:  # noqa: BLE001
            nerr += 1
            if len(errors) < 20:
                errors.append(f"{op} {args[:1]}: {e!r}")
            raise
        lat[op].append(time.perf_counter() - t0)
        return r

    async def client(cid: int) -> None:
        nonlocal nerr
        try:
            async with AsyncClient(path) as c:
                base = f"load/c{cid}"
                await c.mkdir(base, parents=True, exist_ok=True)

                async def lane(ln: int) -> None:
                    nonlocal nerr
                    k = 0
                    while time.monotonic() < deadline:
                        k += 1
                        d = f"{base}/l{ln}-{k}"
                        data = payload[: 1 + (k * 7919 + ln) % size]
                        try:
                            await timed("mkdir", c.mkdir, d)
                            await timed("write_file", c.write_file, f"{d}/f", data)
                            await timed("stat", c.stat, f"{d}/f")
                            got = await timed("read_file", c.read_file, f"{d}/f")
                            if got != data:
                                raise AssertionError(f"read_file {d}/f: wrong content")
                            await timed("listdir", c.listdir, d)
                            await timed("rename", c.rename, f"{d}/f", f"{d}/g")
                            await timed("stat2", c.stat, f"{d}/g")
                            await timed("unlink", c.unlink, f"{d}/g")
                            await timed("rmdir", c.rmdir, d)
                        except AssertionError as e:
                            nerr += 1
                            errors.append(str(e))
                        except Exception:  # noqa: BLE001 - counted in timed()
                            await trio.sleep(0.01)

                async with trio.open_nursery() as n:
                    for ln in range(depth):
                        n.start_soon(lane, ln)
        except Exception as e:  # noqa: BLE001
            nerr += 1
            errors.append(f"client {cid}: {e!r}")

    async with trio.open_nursery() as n:
        for cid in range(first, first + count):
            n.start_soon(client, cid)
    return lat, nerr, errors


def _clients_proc(args: tuple[str, int, int, int, float, int]) -> tuple[dict[str, list[float]], int, list[str]]:
    import trio

    return trio.run(_clients, *args)


@dataclass
class LoadResult:
    clients: int
    depth: int
    seconds: float
    elapsed: float
    lat: dict[str, list[float]]
    errors: int
    error_samples: list[str]
    rss_before_kib: int
    rss_after_kib: int
    rss_max_kib: int
    fds_before: int
    fds_after: int
    alive: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.lat.values())

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    def all_sorted(self) -> list[float]:
        return sorted(x for v in self.lat.values() for x in v)


def run_load(d: DaemonProc, clients: int = 8, seconds: float = 3.0, depth: int = 4, procs: int = 1,
             size: int = 4096) -> LoadResult:
    """Run the load against a started daemon; samples its RSS while it runs."""
    import concurrent.futures
    import multiprocessing

    fds0 = d.settle()
    rss0 = d.rss_kib()
    rss_max = rss0
    stop = threading.Event()

    def sample() -> None:
        nonlocal rss_max
        while not stop.wait(0.25):
            try:
                rss_max = max(rss_max, d.rss_kib())
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    jobs = []
    first = 0
    for s in shares:
        jobs.append((d.socket, first, s, depth, seconds, size))
        first += s
    t0 = time.monotonic()
    if procs == 1:
        results = [_clients_proc(jobs[0])]
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx) as ex:
            results = list(ex.map(_clients_proc, jobs))
    elapsed = time.monotonic() - t0
    stop.set()
    sampler.join()
    lat: dict[str, list[float]] = {op: [] for op in OPS}
    nerr = 0
    samples: list[str] = []
    for lt, ne, es in results:
        for k, v in lt.items():
            lat[k].extend(v)
        nerr += ne
        samples.extend(es)
    alive = d.alive()
    fds1 = d.wait_fds(fds0) if alive else -1
    rss1 = d.rss_kib() if alive else -1
    return LoadResult(clients, depth, seconds, elapsed, lat, nerr, samples[:20], rss0, rss1, max(rss_max, rss1),
                      fds0, fds1, alive)


def format_table(r: LoadResult) -> str:
    lines = [
        f"### Load: {r.clients} clients x depth {r.depth}, {r.elapsed:.1f} s",
        "",
        "| operation | calls | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, vals: list[float]) -> str:
        s = sorted(vals)
        return (f"| {name} | {len(s)} | {percentile(s, .5) * 1e3:.2f} | {percentile(s, .95) * 1e3:.2f} | "
                f"{percentile(s, .99) * 1e3:.2f} | {(s[-1] if s else float('nan')) * 1e3:.2f} |")

    for op in OPS:
        lines.append(row(op, r.lat[op]))
    lines.append(row("**all**", [x for v in r.lat.values() for x in v]))
    lines += [
        "",
        "| figure | value |",
        "|---|---:|",
        f"| ops/s | {r.ops_per_s:.0f} |",
        f"| calls | {r.ops} |",
        f"| errors | {r.errors} |",
        f"| daemon alive after | {'yes' if r.alive else 'NO'} |",
        f"| daemon RSS before / after / max (MiB) | {r.rss_before_kib / 1024:.1f} / {r.rss_after_kib / 1024:.1f}"
        f" / {r.rss_max_kib / 1024:.1f} |",
        f"| daemon open fds before / after | {r.fds_before} / {r.fds_after} |",
    ]
    if r.error_samples:
        lines += ["", "Errors (first ones):", ""] + [f"- `{e}`" for e in r.error_samples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=int(os.environ.get("BENEATHD_LOAD_CLIENTS", 64)))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENEATHD_LOAD_SECONDS", 60)))
    p.add_argument("--depth", type=int, default=4, help="requests in flight per client (lanes)")
    p.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1), help="client processes")
    p.add_argument("--size", type=int, default=4096, help="largest write_file payload")
    p.add_argument("--quick", action="store_true", help="8 clients x 3 s (what `python -m bench --quick` runs)")
    a = p.parse_args(argv)
    if a.quick:
        a.clients, a.seconds = 8, 3.0
    with DaemonProc() as d:
        time.sleep(0.2)
        r = run_load(d, a.clients, a.seconds, a.depth, a.procs, a.size)
        print(format_table(r))
        print()
        print(f"Command: `python -m bench.bench_load --clients {a.clients} --seconds {a.seconds:g} "
              f"--depth {a.depth} --procs {a.procs}`; daemon: `{' '.join(d.argv()[1:])}`")
    return 0 if (r.errors == 0 and r.alive) else 1


if __name__ == "__main__":
    sys.exit(main())
