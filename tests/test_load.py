"""Load: N concurrent clients pipelining a mix against the real daemon, for S seconds.

CI default: 8 clients x 3 s.  The documented target (64 clients x 60 s):

    BENEATHD_LOAD_CLIENTS=64 BENEATHD_LOAD_SECONDS=60 BENEATHD_LOAD_PROCS=2 \
        .venv/bin/pytest tests/test_load.py -s
    # or, printing the table only:  .venv/bin/python -m bench.bench_load --clients 64 --seconds 60

Asserts 0 errors, the daemon alive, its fds back to their count before the run and its RSS
growth bounded; prints the latency table (``-s`` shows it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import DaemonProc, format_table, run_load  # noqa: E402

CLIENTS = int(os.environ.get("BENEATHD_LOAD_CLIENTS", "8"))
SECONDS = float(os.environ.get("BENEATHD_LOAD_SECONDS", "3"))
DEPTH = int(os.environ.get("BENEATHD_LOAD_DEPTH", "4"))
PROCS = int(os.environ.get("BENEATHD_LOAD_PROCS", "1"))
#: RSS growth allowed over the run (the daemon's steady state is ~30 MiB)
RSS_GROWTH_MIB = float(os.environ.get("BENEATHD_LOAD_RSS_MIB", "64"))


def test_load_mix_no_errors_bounded_memory() -> None:
    with DaemonProc() as d:
        r = run_load(d, clients=CLIENTS, seconds=SECONDS, depth=DEPTH, procs=PROCS)
        print()
        print(format_table(r))
        assert r.alive, d.log()[-2000:]
        assert r.errors == 0, r.error_samples
        assert r.ops > 0
        assert r.fds_after <= r.fds_before, d.fds()
        assert (r.rss_max_kib - r.rss_before_kib) / 1024 < RSS_GROWTH_MIB, format_table(r)
        # every lane cleaned up after itself: nothing but the per-client directories is left
        left = [os.path.join(dp, n) for dp, dns, fns in os.walk(os.path.join(d.root, "load")) for n in fns]
        assert left == [] or all(".beneathd-" not in p for p in left), left[:10]
