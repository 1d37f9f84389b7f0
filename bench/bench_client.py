"""Client.stat round trip vs a bare blocking SEQPACKET echo server; pipelined throughput.

    sudo .venv/bin/python bench/bench_client.py [--n 5000] [--seconds 2]

Both servers and the latency client are pinned to one CPU (the same run, side by side).
The daemon is started through its CLI (as root it drops to nobody). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import msgpack

from beneathd.client import Client
from beneathd.protocol.types import stat_to_list

CPU = 0


def echo_server(path: str, ready: mp.Event, stat_list: list[int]) -> None:
    os.sched_setaffinity(0, {CPU})
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(path)
    s.listen(16)
    ready.set()
    while True:
        c, _ = s.accept()
        try:
            while True:
                d = c.recv(300000)
                if not d:
                    break
                req = msgpack.unpackb(d[1:])
                c.send(b"\x00" + msgpack.packb([1, req[1], None, stat_list]))
        except OSError:
            pass
        finally:
            c.close()


class Raw:
    """The minimal blocking client for the echo server (same message shape)."""

    def __init__(self, path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.connect(path)
        self.i = 0

    def stat(self, p: str) -> os.stat_result:
        self.i += 1
        self.s.send(b"\x00" + msgpack.packb([0, self.i, "stat", [os.fsencode(p), True]]))
        r = msgpack.unpackb(self.s.recv(300000)[1:])
        from beneathd.protocol.types import stat_from_list
        return stat_from_list(r[3])


def latency(fn, n: int) -> tuple[float, float]:
    for _ in range(200):
        fn("f")
    out = []
    pc = time.perf_counter_ns
    for _ in range(n):
        t = pc()
        fn("f")
        out.append(pc() - t)
    out.sort()
    return out[len(out) // 2] / 1000, out[int(len(out) * 0.99)] / 1000


def _tp_worker(path: str, depth: int, seconds: float, q: mp.Queue) -> None:
    c = Client(path)
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pend = [c.submit("stat", "f") for _ in range(depth)]
        for p in pend:
            p.result()
        done += depth
    c.close()
    q.put(done)


def throughput(path: str, clients: int, depth: int, seconds: float) -> float:
    q: mp.Queue = mp.Queue()
    ps = [mp.Process(target=_tp_worker, args=(path, depth, seconds, q)) for _ in range(clients)]
    t = time.monotonic()
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / (time.monotonic() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="beneathd-bench-")
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "root")
    os.mkdir(root)
    with open(os.path.join(root, "f"), "wb") as f:
        f.write(b"x" * 100)
    sock = os.path.join(tmp, "d.sock")
    esock = os.path.join(tmp, "e.sock")
    cmd = [sys.executable, "-m", "beneathd.daemon", "--root", root, "--socket", sock]
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        cmd += ["--user", "nobody", "--allow-uid", "0"]
    daemon = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    ready = mp.Event()
    echo = mp.Process(target=echo_server, args=(esock, ready, stat_to_list(os.stat(root + "/f"))), daemon=True)
    echo.start()
    try:
        os.sched_setaffinity(daemon.pid, {CPU})
        ready.wait(10)
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {CPU})
        c = Client(sock)
        r = Raw(esock)
        d50, d99 = latency(c.stat, a.n)
        e50, e99 = latency(r.stat, a.n)
        c.close()
        os.sched_setaffinity(0, mine)
        print("| stat round trip (one CPU) | p50 us | p99 us |")
        print("|---|---:|---:|")
        print(f"| beneathd Client.stat | {d50:.1f} | {d99:.1f} |")
        print(f"| bare echo server | {e50:.1f} | {e99:.1f} |")
        print(f"| ratio | {d50 / e50:.2f}x | {d99 / e99:.2f}x |")
        print()
        os.sched_setaffinity(daemon.pid, set(range(os.cpu_count() or 1)))
        print("| throughput (daemon unpinned) | depth 1 | depth 16 |")
        print("|---|---:|---:|")
        for n in (1, 8):
            t1 = throughput(sock, n, 1, a.seconds)
            t16 = throughput(sock, n, 16, a.seconds)
            print(f"| {n} client(s), stat/s | {t1:,.0f} | {t16:,.0f} |")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        echo.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
