"""Benchmarks: `python -m bench [--quick]` runs every bench_*.py and writes bench/RESULTS.md."""
