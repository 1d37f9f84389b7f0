"""The benchmark scripts still run (tiny sizes, one round): a native signature change or a
renamed method must not break ``python -m bench`` unnoticed.  Figures are not checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [
    ["bench.bench_root", "--quick", "--n", "20", "--repeats", "1", "--sample-ms", "1"],
    ["bench.bench_tree", "--quick", "--dirs", "2", "--files", "5", "--repeats", "1"],
    ["bench.bench_deep", "--depth", "50", "--landlock-depth", "20"],
    ["bench.bench_walk", "--dirs", "3", "--files", "5", "--repeats", "1"],
    ["bench.bench_payload", "--mib", "8", "--repeats", "1"],
    ["bench.bench_editor", "--quick", "--n", "5", "--repeats", "1"],
    ["bench.bench_listing", "--entries", "50", "--repeats", "1"],
    ["bench.bench_watch", "--quick", "--n", "5", "--rounds", "1", "--repeats", "1", "--fanout", "3"],
    ["bench.bench_batch", "--quick", "--n", "2", "--repeats", "1", "--big", "2000"],
    ["bench.bench_depth", "--quick", "--repeats", "1"],
    ["bench.bench_cpu", "--n", "300"],
    ["bench.bench_node", "--quick", "--mib", "8", "--repeats", "1", "--n", "50", "--seconds", "0.1"],
    # the long soak (issue 14), ~10 s with 4 connections: its verdict must pass too
    ["bench.soak", "--minutes", "0.17", "--connections", "4", "--procs", "1", "--sample", "2"],
], ids=lambda a: a[0])
def test_bench_script_runs(argv: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", *argv], cwd=TOP, capture_output=True, text=True, timeout=120)
    if r.returncode == 2 and "npm ci" in r.stderr:
        pytest.skip("the Node client is not built")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "|" in r.stdout  # a table came out
