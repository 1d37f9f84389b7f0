"""One large file: ``Root.copy_file`` vs ``cp --reflink=auto`` (and ``shutil.copyfile``).

The source (1 GiB, ``--quick``: 64 MiB, of incompressible non-sparse data) is written
once and synced.  Before every timed copy the destination is absent and dirty pages are
written back (untimed); after it the copy's size is checked, it is removed and synced.
On a file system without reflink (ext4) both ``Root.copy_file`` and coreutils ``cp``
(>= 9.0) copy with ``copy_file_range(2)``; ``shutil.copyfile`` uses ``sendfile(2)``.
The source stays in the page cache (caches cannot be dropped without root): every run
is warm and the figure is a page-cache copy bounded by the dirty-page throttle, not by
the disk.  Goal (issue 6): ``copy_file`` <= 1.1x ``cp --reflink=auto``.

    python -m bench.bench_copy [--quick] [--repeats N] [--mib M] [--dir DIR]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from beneathd.daemon import Root

from bench._util import (Case, apply_pin, base_parser, drop_dirty, fmt_s, interleave, md_table,
                         paired_ratios, quantile, run_cmd, verdict)

GOAL = 1.1
MIB = 1 << 20


def fs_reflink(top: str) -> str:
    """'yes' if FICLONE works here, else the errno name."""
    import errno
    import fcntl
    a, b = os.path.join(top, ".rl-a"), os.path.join(top, ".rl-b")
    with open(a, "wb") as f:
        f.write(b"x" * 4096)
    try:
        with open(a, "rb") as s, open(b, "wb") as d:
            try:
                fcntl.ioctl(d.fileno(), 0x40049409, s.fileno())  # FICLONE
                return "yes"
            except OSError as e:
                return f"no ({errno.errorcode.get(e.errno, e.errno)})"
    finally:
        os.unlink(a)
        os.unlink(b)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--mib", type=int, default=None, help="file size in MiB")
    a = p.parse_args(argv)
    apply_pin(a.pin)
    mib = a.mib or (64 if a.quick else 1024)
    repeats = a.repeats or (5 if a.quick else 5)
    top = tempfile.mkdtemp(prefix="bench-copy-", dir=a.dir)
    try:
        reflink = fs_reflink(top)
        src = os.path.join(top, "src")
        block = os.urandom(MIB)
        with open(src, "wb") as f:
            for i in range(mib):
                f.write(block[i % 7:] + block[:i % 7])
        drop_dirty()
        size = mib * MIB
        dst = os.path.join(top, "dst")
        root = Root(top)

        def before() -> None:
            if os.path.lexists(dst):
                os.unlink(dst)
            drop_dirty()

        def after() -> None:
            got = os.stat(dst).st_size
            if got != size:
                raise SystemExit(f"copy made {got} bytes, expected {size}")
            os.unlink(dst)
            drop_dirty()

        def cp_tool(n: int) -> None:
            run_cmd(["cp", "--reflink=auto", src, dst])

        def sh(n: int) -> None:
            shutil.copyfile(src, dst)

        def rc(n: int) -> None:
            root.copy_file("src", "dst")

        cases = [Case("cp --reflink=auto", cp_tool, before, after),
                 Case("shutil.copyfile", sh, before, after),
                 Case("Root.copy_file", rc, before, after)]
        t0 = time.monotonic()
        res = interleave(cases, repeats, 1, warmup=1)
        print(f"  copy done in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        root.close()
    finally:
        subprocess.run(["rm", "-rf", top])

    base = res["cp --reflink=auto"]
    rows = []
    for name, goal in (("Root.copy_file", GOAL), ("shutil.copyfile", None), ("cp --reflink=auto", None)):
        s = res[name]
        ratio = s.median / base.median
        pr = paired_ratios(s, base)
        rows.append([f"copy {mib} MiB", name, fmt_s(s.median), f"{fmt_s(s.min)} .. {fmt_s(s.max)}",
                     f"{size / (s.median / 1e9) / MIB:.0f} MiB/s", f"{ratio:.2f}x",
                     f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}",
                     f"{goal}x" if goal else "-", verdict(ratio, goal)])
    print("### One large file: copy_file\n")
    print(f"Command: `python -m bench.bench_copy{' --quick' if a.quick else ''}`; {mib} MiB of "
          f"non-sparse data, {repeats} interleaved runs per contender after 1 warm-up round, "
          f"destination absent and dirty pages synced before each run; warm page cache. "
          f"Reflink (FICLONE) on this file system: {reflink}, so `Root.copy_file` and `cp` both "
          "use copy_file_range; shutil uses sendfile. Median wall time, spread min .. max; "
          "ratio vs `cp --reflink=auto`; paired = p25 .. p75 of per-round ratios.\n")
    print(md_table(["operation", "subject", "median", "min..max", "throughput", "ratio",
                    "paired p25..p75", "goal", "verdict"], rows))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
