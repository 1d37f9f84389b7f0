"""Big payloads: ``write_file`` / ``read_file`` of 1 GiB through ``Client`` vs plain files.

The real daemon (``python -m beneathd.daemon``, Landlock on, as ``nobody`` when run as
root) serves a root on the same file system as the plain contender's file. Interleaved
rounds, one operation per sample: ``Client.write_file(name, data)`` (above 4 MiB the client
writes into an atomic writer's fd and the daemon publishes it) against ``open(path,
"wb").write(data)`` in this process, and ``Client.read_file`` (read here through the fd the
daemon opens) against ``open(path, "rb").read()`` of the same file. Dirty pages are written back between
samples (``os.sync``, untimed) so that one contender's writeback does not land in the next
one's time; after ours, also until the daemon has closed the replaced file it holds
(``daemon/release.py``: the old file's storage is freed after the reply, not inside the
rename, where a plain ``open(path, "wb")`` frees it in its ``O_TRUNC``). Also the daemon's
peak RSS growth (VmHWM) over the run.

    python -m bench.bench_payload [--quick] [--mib 1024] [--repeats 5] [--dir DIR]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench._util import Case, base_parser, drop_dirty, fmt_s, interleave, md_table, paired_ratios, quantile, verdict
from bench.bench_load import DaemonProc

GOAL = 1.1


def _hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _settled(d: DaemonProc, idle: int) -> None:
    """Wait (untimed) until the daemon has closed the replaced file it held (its fd count is
    back to idle: daemon/release.py frees a replaced big file after the reply), then write
    back dirty pages, so that the freeing does not land in the next contender's time."""
    deadline = time.monotonic() + 60
    while d.fd_count() > idle and time.monotonic() < deadline:
        time.sleep(0.01)
    drop_dirty()


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--mib", type=int, default=None)
    a = p.parse_args()
    mib = a.mib or (64 if a.quick else 1024)
    repeats = a.repeats or (3 if a.quick else 5)
    data = b"\xa5" * (mib << 20)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-payload"))
    from beneathd.client import Client

    plain = os.path.join(d.base, "plain")
    rows: list[list[object]] = []
    try:
        d.start()
        assert d.proc is not None
        with Client(d.socket) as c:
            c.write_file("warm", b"x")
            hwm0 = _hwm_kib(d.proc.pid)
            idle = d.fd_count()

            def settled() -> None:
                _settled(d, idle)

            def w_ours(n: int) -> None:
                c.write_file("big", data)

            def w_plain(n: int) -> None:
                with open(plain, "wb") as f:
                    f.write(data)

            def w_by_hand(n: int) -> None:
                tmp = plain + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, plain + ".atomic")

            def r_ours(n: int) -> None:
                assert len(c.read_file("big")) == len(data)

            def r_plain(n: int) -> None:  # the same file the daemon opens for ours
                with open(os.path.join(d.root, "big"), "rb") as f:
                    assert len(f.read()) == len(data)

            hand = Case("temporary + os.replace (atomic by hand)", w_by_hand, drop_dirty, drop_dirty)
            for title, ours, base, others, goal in [
                (f"write_file, {mib} MiB", Case("Client.write_file", w_ours, drop_dirty, settled),
                 Case("open().write", w_plain, drop_dirty, drop_dirty), [hand], GOAL),
                (f"read_file, {mib} MiB (page cache warm)", Case("Client.read_file", r_ours),
                 Case("open().read", r_plain), [], GOAL),
            ]:
                res = interleave([ours, base, *others], repeats, 1, warmup=1)
                b = res[base.name]
                for case, g in [(ours, goal), *((o, None) for o in others), (base, None)]:
                    st = res[case.name]
                    ratio = st.median / b.median
                    pr = paired_ratios(st, b)
                    rows.append([title, case.name, fmt_s(st.median), f"{fmt_s(st.min)} .. {fmt_s(st.max)}",
                                 f"{(mib / 1024) / (st.median / 1e9):.2f} GiB/s", f"{ratio:.2f}x",
                                 f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}" if case is not base else "-",
                                 f"{g}x" if g else "-", verdict(ratio, g) if g else "-"])
            growth = (_hwm_kib(d.proc.pid) - hwm0) / 1024
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Big payloads\n")
    print(f"`python -m bench.bench_payload{' --quick' if a.quick else ''}`: the real daemon (Landlock on); "
          f"{repeats} interleaved rounds of one call each; dirty pages written back between write samples "
          "(untimed); ratio: median over median, with the paired per-round ratios' p25 .. p75.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "rate", "ratio", "paired p25 .. p75",
                    "goal", "verdict"], rows))
    print(f"\nDaemon peak RSS growth over the whole run (VmHWM): {growth:.1f} MiB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
