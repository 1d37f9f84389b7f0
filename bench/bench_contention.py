"""A client's ``stat`` latency while another client copies a big file, vs the same when idle.

    python -m bench.bench_contention [--quick] [--size-mib 1024] [--rounds 3] [--n 3000]

The real daemon (CLI) serves one root holding a file of ``--size-mib``; one process loops
``Client.copy_file`` of it (a long call: it runs in a worker thread) while this process
measures ``Client.stat`` round trips; each round also measures the same number of stats
with nothing else running.  Goal (issue 6): p99 during the copy at most 2x the idle p99.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

from beneathd.client import Client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_load import DaemonProc  # noqa: E402

GOAL = 2.0


def _copier(sock: str, stop: mp.Event, started: mp.Event, copies: mp.Value) -> None:
    with Client(sock) as c:
        while not stop.is_set():
            started.set()
            c.copy_file("big", "big.copy")
            with copies.get_lock():
                copies.value += 1


def _stats(c: Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        c.stat("small")
        out.append((time.perf_counter_ns() - t) / 1000)
    return sorted(out)


def _p(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=3000)
    a = ap.parse_args()
    if a.quick:
        a.size_mib, a.rounds, a.n = 128, 2, 1500
    d = DaemonProc()
    big = os.path.join(d.root, "big")
    with open(big, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(a.size_mib):
            f.write(chunk)
    with open(os.path.join(d.root, "small"), "wb") as f:
        f.write(b"x")
    d.chown_tree(d.root)
    d.start()
    idle50, idle99, busy50, busy99, copies_done = [], [], [], [], 0
    try:
        with Client(d.socket) as c:
            _stats(c, 200)  # warm up
            for _ in range(a.rounds):
                xs = _stats(c, a.n)
                idle50.append(_p(xs, 0.5))
                idle99.append(_p(xs, 0.99))
                stop, started, copies = mp.Event(), mp.Event(), mp.Value("i", 0)
                p = mp.Process(target=_copier, args=(d.socket, stop, started, copies), daemon=True)
                p.start()
                started.wait(30)
                time.sleep(0.05)  # the copy is under way in a worker thread
                xs = _stats(c, a.n)
                stop.set()
                p.join(120)
                copies_done += copies.value
                busy50.append(_p(xs, 0.5))
                busy99.append(_p(xs, 0.99))
    finally:
        d.close()
    i50, i99 = statistics.median(idle50), statistics.median(idle99)
    b50, b99 = statistics.median(busy50), statistics.median(busy99)
    ratio = b99 / i99
    print(f"### stat latency while another client copies {a.size_mib} MiB\n")
    print(f"Command: `python -m bench.bench_contention{' --quick' if a.quick else ''}`; "
          f"{a.rounds} rounds of {a.n} `Client.stat` calls idle, then as many during a "
          f"`copy_file` loop of a {a.size_mib} MiB file by another client process "
          f"({copies_done} copies finished); medians over rounds.\n")
    print("| operation | subject | stat p50 | stat p99 | ratio | goal | verdict |")
    print("|---|---|---|---|---|---|---|")
    print(f"| stat p99, idle | Client.stat | {i50:.1f} us | {i99:.1f} us | 1.00x | | |")
    print(f"| stat p99 during a {a.size_mib} MiB copy_file | Client.stat | {b50:.1f} us | {b99:.1f} us "
          f"| {ratio:.2f}x | {GOAL}x | {'PASS' if ratio <= GOAL else 'MISS'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
