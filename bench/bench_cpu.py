"""The daemon's CPU time per small request (issue 13: every percent it drops is a percent
more projects per host): the daemon's own user + system time (``/proc/PID/stat``) over
``--n`` requests of each kind from one ``Client``, one by one, pipelined (``submit``, 16
in flight) and batched (``batch`` of 256), and the client's own CPU beside it.

The real daemon (``python -m beneathd.daemon``, Landlock on, as ``nobody`` when run as
root). No goal: the figure is recorded.

    python -m bench.bench_cpu [--quick] [--n 100000]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench._util import base_parser, md_table
from bench.bench_load import DaemonProc

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """Seconds of user + system CPU the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads made later inherit it from theirs)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # (gone meanwhile)


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--n", type=int, default=None)
    a = p.parse_args()
    n = a.n or (10_000 if a.quick else 100_000)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-cpu"))
    from beneathd.client import Client

    rows: list[list[object]] = []
    try:
        d.start()
        with Client(d.socket) as c:
            c.write_file("f", b"x" * 100)
            c.mkdir("ls")
            c.batch([("write_file", f"ls/e{i:03d}", b"") for i in range(100)])

            def one_by_one(name: str, *args: object) -> None:
                m = getattr(c, name)
                for _ in range(n):
                    m(*args)

            def pipelined(name: str, *args: object) -> None:
                pend = []
                for _ in range(n):
                    pend.append(c.submit(name, *args))
                    if len(pend) >= 16:
                        pend.pop(0).result()
                for q in pend:
                    q.result()

            def batched(name: str, *args: object) -> None:
                calls = [(name, *args)] * 256
                for _ in range(n // 256):
                    c.batch(calls)

            kinds = [("stat `f`", "one by one", one_by_one, ("stat", "f")),
                     ("stat `f`", "pipelined, 16 in flight", pipelined, ("stat", "f")),
                     ("stat `f`", "batches of 256", batched, ("stat", "f")),
                     ("write_file 100 B", "one by one", one_by_one, ("write_file", "w", b"y" * 100)),
                     ("listdir (100 entries)", "one by one", one_by_one, ("listdir", "ls"))]
            mine = os.sched_getaffinity(0)
            cpus = sorted(mine)
            placements = [("same CPU", {cpus[0]}, {cpus[0]})]
            if len(cpus) > 1:
                placements.append(("two CPUs", {cpus[0]}, {cpus[1]}))
            for where, dset, cset in placements:
                _pin(d.pid, dset)
                os.sched_setaffinity(0, cset)
                for what, how, fn, args in kinds:
                    calls = n if how != "batches of 256" else (n // 256) * 256
                    fn(*args if how == "one by one" else args)  # warm-up pass
                    d0, c0, t0 = _cpu(d.pid), os.times(), time.perf_counter()
                    fn(*args)
                    d1, c1, t1 = _cpu(d.pid), os.times(), time.perf_counter()
                    dcpu = (d1 - d0) / calls * 1e6
                    ccpu = ((c1.user - c0.user) + (c1.system - c0.system)) / calls * 1e6
                    rows.append([what, how, where, f"{calls:,}", f"{dcpu:.1f} us", f"{ccpu:.1f} us",
                                 f"{(t1 - t0) / calls * 1e6:.1f} us", f"{calls / (t1 - t0):,.0f}/s"])
            os.sched_setaffinity(0, mine)
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Daemon CPU per request\n")
    print(f"`python -m bench.bench_cpu{' --quick' if a.quick else ''}`: the daemon's user + system CPU time "
          "(`/proc/PID/stat`, clock ticks) over the calls of one Client, divided by the calls; the client's own "
          "CPU (`os.times`) and the wall time per call beside it. After one untimed warm-up pass of each. Placement: "
          "the daemon (all its threads) and the client pinned to the same CPU, then to two different ones; which of "
          "the two the scheduler picks decides most of an unpinned figure (a wake-up on another CPU costs this VM "
          "an IPI and cold caches on every request).\n")
    print(md_table(["operation", "how", "placement", "calls", "daemon CPU per call", "client CPU per call",
                    "wall per call", "rate"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
