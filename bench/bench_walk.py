"""walk of a 100k-entry tree: ``Client.walk`` through the real daemon vs ``os.walk`` and
``Root.walk`` in this process.

The tree: ``--dirs`` directories of ``--files`` empty files (100,200 entries by default),
warm in the page cache. The daemon (``python -m beneathd.daemon``, Landlock on, as
``nobody`` when run as root) streams the walk in pages; each contender consumes every
tuple. Interleaved rounds; also the time to the first tuple through the daemon.

    python -m bench.bench_walk [--quick] [--dirs 200] [--files 500] [--repeats 5] [--dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench._util import Case, base_parser, fmt_s, interleave, make_tree, md_table, paired_ratios, quantile, verdict
from bench.bench_load import DaemonProc

GOAL = 1.5


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--dirs", type=int, default=None)
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--no-landlock", dest="daemon_args", action="store_const", const=["--no-landlock"], default=[],
                   help="serve without Landlock (to see what it costs)")
    a = p.parse_args()
    dirs = a.dirs or (20 if a.quick else 200)
    repeats = a.repeats or (3 if a.quick else 5)
    d = DaemonProc("--no-journal", *a.daemon_args, base=None if a.dir is None else os.path.join(a.dir, "bench-walk"))
    from beneathd.client import Client
    from beneathd.daemon import Root

    rows: list[list[object]] = []
    try:
        top = os.path.join(d.root, "t")
        entries = make_tree(top, dirs, a.files)
        d.chown_tree(d.root)
        d.start()
        with Client(d.socket) as c, Root(d.root) as root:
            def consume(it: object) -> None:  # (returns None: interleave then times the whole call)
                n = 0
                for _, dn, fn in it:  # type: ignore[attr-defined]
                    n += len(dn) + len(fn)
                assert n == entries, n

            firsts: list[float] = []

            def ours(n: int) -> None:
                t0 = time.perf_counter()
                it = iter(c.walk("t"))
                first = next(it)
                firsts.append(time.perf_counter() - t0)
                total = len(first[1]) + len(first[2])
                for _, dn, fn in it:
                    total += len(dn) + len(fn)
                assert total == entries

            res = interleave([Case("Client.walk", ours),
                              Case("os.walk (in-process)", lambda n: consume(os.walk(top))),
                              Case("Root.walk (in-process)", lambda n: consume(root.walk("t")))],
                             repeats, 1, warmup=1)
        b = res["os.walk (in-process)"]
        for name in ("Client.walk", "Root.walk (in-process)", "os.walk (in-process)"):
            st = res[name]
            ratio = st.median / b.median
            pr = paired_ratios(st, b)
            g = GOAL if name == "Client.walk" else None
            rows.append([f"walk, {entries:,} entries", name, fmt_s(st.median), f"{fmt_s(st.min)} .. {fmt_s(st.max)}",
                         f"{ratio:.2f}x", f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}",
                         f"{g}x" if g else "-", verdict(ratio, g) if g else "-"])
        first_ms = sorted(firsts)[len(firsts) // 2] * 1e3
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### walk\n")
    print(f"`python -m bench.bench_walk{' --quick' if a.quick else ''}`: the real daemon (Landlock on) streaming "
          f"pages; {repeats} interleaved rounds; every tuple consumed; ratio against os.walk in this process.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "ratio", "paired p25 .. p75", "goal", "verdict"],
                   rows))
    print(f"\nFirst tuple through the daemon after {first_ms:.1f} ms (median).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
