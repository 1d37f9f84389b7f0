"""A file explorer's listing: ``scandir`` of a 10k-entry directory with each entry's lstat
and the link text of its symlinks, through ``Client`` (one call: the client asks for the
link texts), vs the same done in-process with ``os.scandir`` + ``DirEntry.stat(follow_symlinks=False)``
+ ``os.readlink`` per link, and ``Root.scandir`` beside them.

The real daemon (``python -m beneathd.daemon``, Landlock on, as ``nobody`` when run as
root) serves a root on a tmpfs mounted for the run when running as root (else on the
file system of ``--dir``); the directory holds ``--entries`` entries, one in ten a symlink.
Interleaved rounds; every entry's lstat and link text are taken.

    python -m bench.bench_listing [--quick] [--entries 10000] [--repeats 7] [--dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench._util import Case, base_parser, fmt_s, interleave, md_table, paired_ratios, quantile, verdict
from bench.bench_load import DaemonProc

GOAL = 1.3


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--entries", type=int, default=None)
    a = p.parse_args()
    entries = a.entries or (1000 if a.quick else 10_000)
    repeats = a.repeats or (3 if a.quick else 7)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-listing"))
    from beneathd.client import Client
    from beneathd.daemon import Root

    mounted = False
    rows: list[list[object]] = []
    try:
        if os.geteuid() == 0:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", d.root]).returncode == 0
        top = os.path.join(d.root, "ls")
        os.mkdir(top)
        for i in range(entries):
            name = os.path.join(top, f"entry-{i:05d}")
            if i % 10 == 9:
                os.symlink(f"entry-{i - 1:05d}", name)
            else:
                with open(name, "wb") as f:
                    f.write(b"x" * (i % 100))
        d.chown_tree(d.root)
        d.start()
        with Client(d.socket) as c, Root(d.root) as root:
            def ours(n: int) -> None:
                for e in c.scandir("ls"):
                    e.stat(follow_symlinks=False)
                    if e.is_symlink():
                        assert e.link_target is not None

            def in_root(n: int) -> None:
                for e in root.scandir("ls"):
                    e.stat(follow_symlinks=False)
                    if e.is_symlink():
                        assert e.link_target is not None

            def by_hand(n: int) -> None:
                with os.scandir(top) as it:
                    for e in it:
                        e.stat(follow_symlinks=False)
                        if e.is_symlink():
                            os.readlink(e.path)

            names = ["Client.scandir", "Root.scandir (in-process)", "os.scandir + lstat + readlink (in-process)"]
            res = interleave([Case(names[0], ours), Case(names[1], in_root), Case(names[2], by_hand)],
                             repeats, 1, warmup=1)
        base = res[names[2]]
        for name in names:
            st = res[name]
            ratio = st.median / base.median
            pr = paired_ratios(st, base)
            goal = GOAL if name == names[0] else None
            rows.append([f"listing, {entries:,} entries", name, fmt_s(st.median), f"{fmt_s(st.min)} .. {fmt_s(st.max)}",
                         f"{ratio:.2f}x", f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}" if st is not base else "-",
                         f"{goal}x" if goal else "-", verdict(ratio, goal) if goal else "-"])
    finally:
        d.stop()
        if mounted:
            subprocess.run(["umount", d.root], check=False)
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Listing\n")
    print(f"`python -m bench.bench_listing{' --quick' if a.quick else ''}`: the real daemon (Landlock on), the root on "
          f"{'a tmpfs' if mounted else 'the file system of the run directory'}; {repeats} interleaved rounds of one "
          "listing; every entry's lstat and link text taken; ratio against the in-process os loop, with the paired "
          "per-round ratios' p25 .. p75.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "ratio", "paired p25 .. p75", "goal", "verdict"],
                   rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
