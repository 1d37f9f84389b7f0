"""An editor's save loop: ``read_file`` + ``write_file`` of a 50 KB file through ``Client``
vs the same done in-process with plain ``open().read()`` and an atomic
temporary-write-rename (``os.replace``), and ``Root`` in-process beside them.

The real daemon (``python -m beneathd.daemon``, Landlock on, crash journal off, as
``nobody`` when run as root) serves a root on the same file system as the plain
contender's directory. Interleaved rounds of ``--n`` loops each; the figure is the time
per loop (one read and one atomic write).

    python -m bench.bench_editor [--quick] [--kb 50] [--n 300] [--repeats 7] [--dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench._util import Case, base_parser, fmt_s, interleave, md_table, paired_ratios, quantile, verdict
from bench.bench_load import DaemonProc

GOAL = 2.0


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--kb", type=int, default=50)
    p.add_argument("--n", type=int, default=None)
    a = p.parse_args()
    n = a.n or (30 if a.quick else 300)
    repeats = a.repeats or (3 if a.quick else 7)
    data = os.urandom(a.kb * 1000)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-editor"))
    from beneathd.client import Client
    from beneathd.daemon import Root

    plain_dir = os.path.join(d.base, "plain")
    os.makedirs(plain_dir)
    plain = os.path.join(plain_dir, "doc.txt")
    rows: list[list[object]] = []
    try:
        d.start()
        with Client(d.socket) as c, Root(d.root) as root:
            c.write_file("doc.txt", data)
            with open(plain, "wb") as f:
                f.write(data)

            def ours(k: int) -> None:
                rf, wf = c.read_file, c.write_file
                for _ in range(k):
                    wf("doc.txt", rf("doc.txt"))

            def in_root(k: int) -> None:
                rf, wf = root.read_file, root.write_file
                for _ in range(k):
                    wf("doc.txt", rf("doc.txt"))

            def by_hand(k: int) -> None:
                tmp = plain + ".tmp"
                for _ in range(k):
                    with open(plain, "rb") as f:
                        b = f.read()
                    with open(tmp, "wb") as f:
                        f.write(b)
                    os.replace(tmp, plain)

            res = interleave([Case("Client.read_file + write_file", ours),
                              Case("Root.read_file + write_file (in-process)", in_root),
                              Case("open().read() + tmp write + os.replace", by_hand)], repeats, n, warmup=1)
        base = res["open().read() + tmp write + os.replace"]
        for name, goal in [("Client.read_file + write_file", GOAL), ("Root.read_file + write_file (in-process)", None),
                           ("open().read() + tmp write + os.replace", None)]:
            st = res[name]
            ratio = st.median / base.median
            pr = paired_ratios(st, base)
            rows.append([f"save loop, {a.kb} KB", name, fmt_s(st.median), f"{fmt_s(st.min)} .. {fmt_s(st.max)}",
                         f"{ratio:.2f}x", f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}" if st is not base else "-",
                         f"{goal}x" if goal else "-", verdict(ratio, goal) if goal else "-"])
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Editor save loop\n")
    print(f"`python -m bench.bench_editor{' --quick' if a.quick else ''}`: the real daemon (Landlock on); "
          f"{repeats} interleaved rounds of {n} loops (read the file, write it back atomically); time per loop; "
          "ratio against the plain in-process loop, with the paired per-round ratios' p25 .. p75.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "ratio", "paired p25 .. p75", "goal", "verdict"],
                   rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
