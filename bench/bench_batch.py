"""Batch: many calls in one round trip.

1. ``stat`` of a file in batches of ``--size`` calls through ``Client.batch``, per call,
   against ``Root.stat`` in-process (goal: at most 2x) and ``Client.stat`` one by one.
2. Another client's ``stat`` p99 while a 100,000-call batch of ``stat`` runs (sent by a
   separate process, so that the two clients share no GIL), against the same client's
   p99 alone (goal: at most 3x).

The real daemon (``python -m beneathd.daemon``, Landlock on, as ``nobody`` when run as
root) serves the root.

    python -m bench.bench_batch [--quick] [--size 256] [--n 40] [--repeats 7]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench._util import Case, base_parser, fmt_ns, interleave, md_table, paired_ratios, quantile, verdict
from bench.bench_load import DaemonProc

GOAL_BATCH = 2.0
GOAL_STALL = 3.0

_BIG = """
import sys, time
from beneathd.client import Client
with Client(sys.argv[1]) as c:
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    r = c.batch([("stat", "f")] * int(sys.argv[2]))
    print(f"{time.perf_counter() - t:.3f} {len(r)}", flush=True)
"""


def _p99_during_big_batch(sock: str, c: object, rounds: int, big: int) -> tuple[float, float, float]:
    """(p99 alone, p99 during a 100k batch, the batch's own seconds), medians over rounds."""
    alone, during, secs = [], [], []
    for _ in range(rounds):
        lat = []
        for _ in range(2000):
            t = time.perf_counter_ns()
            c.stat("f")  # type: ignore[attr-defined]
            lat.append(time.perf_counter_ns() - t)
        alone.append(quantile(sorted(lat), 0.99))
        p = subprocess.Popen([sys.executable, "-c", _BIG, sock, str(big)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        assert p.stdin is not None and p.stdout is not None
        p.stdout.readline()
        p.stdin.write("go\n")
        p.stdin.flush()
        lat = []
        os.set_blocking(p.stdout.fileno(), False)
        out = ""
        while True:
            t = time.perf_counter_ns()
            c.stat("f")  # type: ignore[attr-defined]
            lat.append(time.perf_counter_ns() - t)
            try:
                chunk = p.stdout.read()
            except (BlockingIOError, TypeError):
                chunk = None
            if chunk:
                out += chunk
                if "\n" in out:
                    break
        p.wait(60)
        during.append(quantile(sorted(lat), 0.99))
        secs.append(float(out.split()[0]))
    return sorted(alone)[len(alone) // 2], sorted(during)[len(during) // 2], sorted(secs)[len(secs) // 2]


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--big", type=int, default=100_000, help="calls in the other process's batch")
    a = p.parse_args()
    n = a.n or (5 if a.quick else 40)
    repeats = a.repeats or (3 if a.quick else 7)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-batch"))
    from beneathd.client import Client
    from beneathd.daemon import Root

    rows: list[list[object]] = []
    try:
        d.start()
        with Client(d.socket) as c, Root(d.root) as root:
            c.write_file("f", b"x")
            calls = [("stat", "f")] * a.size

            def batched(k: int) -> None:
                b = c.batch
                for _ in range(k):
                    b(calls)

            def one_by_one(k: int) -> None:
                s = c.stat
                for _ in range(k * a.size):
                    s("f")

            def in_process(k: int) -> None:
                s = root.stat
                for _ in range(k * a.size):
                    s("f")

            res = interleave([Case("Client.batch", batched), Case("Client.stat, one by one", one_by_one),
                              Case("Root.stat (in-process)", in_process)], repeats, n, warmup=1)
            base = res["Root.stat (in-process)"]
            for name, goal in [("Client.batch", GOAL_BATCH), ("Client.stat, one by one", None),
                               ("Root.stat (in-process)", None)]:
                st = res[name]
                per = st.median / a.size
                ratio = st.median / base.median
                pr = paired_ratios(st, base)
                rows.append([f"stat per call, batches of {a.size}", name, fmt_ns(per),
                             f"{fmt_ns(st.min / a.size)} .. {fmt_ns(st.max / a.size)}", f"{ratio:.2f}x",
                             f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}" if st is not base else "-",
                             f"{goal}x" if goal else "-", verdict(ratio, goal) if goal else "-"])
            alone, during, secs = _p99_during_big_batch(d.socket, c, 3 if a.quick else 5, a.big)
            ratio = during / alone
            rows.append([f"another client's stat p99 during a {a.big:,}-call batch ({secs:.2f} s)", "Client.stat",
                         fmt_ns(during), f"alone {fmt_ns(alone)}", f"{ratio:.2f}x", "-", f"{GOAL_STALL}x",
                         verdict(ratio, GOAL_STALL)])
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Batch\n")
    print(f"`python -m bench.bench_batch{' --quick' if a.quick else ''}`: the real daemon (Landlock on); "
          f"{repeats} interleaved rounds of {n} batches of {a.size} stat calls (the one-by-one and in-process rows "
          "make the same number of calls); time per call; ratio against Root.stat in-process, with the paired "
          "per-round ratios' p25 .. p75. The last row: p99 of 2000 single stat calls alone vs p99 of those made "
          "while another process's 100,000-call batch runs (medians over rounds).\n")
    print(md_table(["operation", "subject", "median", "min .. max", "ratio", "paired p25 .. p75", "goal", "verdict"],
                   rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
