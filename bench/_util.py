"""Timing helpers shared by the bench scripts: interleaved repeated runs, medians,
spread, paired ratios and a Markdown table.

Every comparison in a table is measured in the same process, in the same run, with the
contenders interleaved (A B C, then B C A, ...), so that machine noise (other processes,
frequency changes, page-cache state) lands on all of them alike.  A figure is the
median over the repeats; the spread is given as min..max of the samples and as the
inter-quartile range of the per-repeat (paired) ratios.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

__all__ = [
    "Case",
    "Stats",
    "interleave",
    "calibrate",
    "summarize",
    "quantile",
    "md_table",
    "fmt_ns",
    "fmt_s",
    "verdict",
    "base_parser",
    "machine_info",
    "run_cmd",
    "drop_dirty",
]

Clock = time.perf_counter_ns


@dataclass
class Case:
    """One contender.  ``run(n)`` performs ``n`` operations and returns the elapsed ns of
    the part that counts (or ``None``: then the whole call is timed).  ``setup()`` runs
    untimed before each sample, ``teardown()`` untimed after it."""

    name: str
    run: Callable[[int], int | None]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None


@dataclass
class Stats:
    samples: list[float] = field(default_factory=list)  # per-op figure of each repeat

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def q(self, p: float) -> float:
        return quantile(self.samples, p)


def quantile(xs: Sequence[float], p: float) -> float:
    """Linear-interpolated quantile (p in 0..1) of a non-empty sample."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def interleave(cases: Sequence[Case], repeats: int, n: int, *, warmup: int = 1) -> dict[str, Stats]:
    """Run every case ``repeats`` times, rotating the order each round; each sample is
    the per-op time in ns of ``n`` operations.  ``warmup`` untimed rounds come first.
    The garbage collector is off while a sample runs (as in ``timeit``)."""
    out = {c.name: Stats() for c in cases}
    k = len(cases)
    for rnd in range(-warmup, repeats):
        order = [cases[(i + rnd) % k] for i in range(k)]
        if rnd % 2:
            order.reverse()
        for c in order:
            if c.setup:
                c.setup()
            gc.collect()
            gc.disable()
            try:
                t0 = Clock()
                inner = c.run(n)
                t1 = Clock()
                if not isinstance(inner, int):
                    inner = None
            finally:
                gc.enable()
            if c.teardown:
                c.teardown()
            if rnd >= 0:
                el = inner if inner is not None else t1 - t0
                out[c.name].samples.append(el / n)
    return out


def calibrate(case: Case, target_ns: float, *, cap: int = 1_000_000) -> int:
    """How many operations make one sample of ``case`` last about ``target_ns``."""
    n = 1
    while True:
        if case.setup:
            case.setup()
        t0 = Clock()
        case.run(n)
        el = Clock() - t0
        if case.teardown:
            case.teardown()
        if el >= target_ns / 8 or n >= cap:
            return max(1, min(cap, int(n * target_ns / max(el, 1))))
        n *= 4


def paired_ratios(a: Stats, b: Stats) -> list[float]:
    """a/b per repeat (both were measured in the same round)."""
    return [x / y for x, y in zip(a.samples, b.samples) if y > 0]


def summarize(res: dict[str, Stats], subject: str, baseline: str) -> tuple[float, float, float]:
    """(ratio of medians, p25, p75 of the paired ratios) of ``subject`` over ``baseline``."""
    a, b = res[subject], res[baseline]
    pr = paired_ratios(a, b)
    return a.median / b.median, quantile(pr, 0.25), quantile(pr, 0.75)


def verdict(ratio: float, goal: float | None) -> str:
    if goal is None:
        return "-"
    return "PASS" if ratio <= goal else "MISS"


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"


def fmt_s(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    return f"{ns / 1e6:.1f} ms"


def fmt_spread(st: Stats, fmt: Callable[[float], str]) -> str:
    return f"{fmt(st.min)} .. {fmt(st.max)}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    sep = "|" + "|".join("-" * (x + 2) for x in w) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--quick", action="store_true", help="small sizes / few repeats (seconds)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per contender")
    p.add_argument("--dir", default=None,
                   help="where to make the scratch tree (default: a temporary directory in $TMPDIR)")
    p.add_argument("--pin", type=int, default=None, metavar="CPU",
                   help="pin this process (and the tools it runs) to one CPU")
    return p


def apply_pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def run_cmd(argv: Sequence[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def drop_dirty() -> None:
    """Write back dirty pages (untimed) so that one contender's writeback does not land in
    the next one's timing.  Caches cannot be dropped here (no root), only flushed."""
    os.sync()


def _fs_type(path: str) -> str:
    """The type of the mount holding ``path``, from /proc/self/mounts (longest prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                mnt = fields[1].replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, fields[2]
    except OSError:
        pass
    return kind


def machine_info(path: str = ".") -> dict[str, str]:
    info = {
        "nproc": str(os.cpu_count()),
        "affinity": str(len(os.sched_getaffinity(0))),
        "kernel": platform.release(),
        "python": sys.version.split()[0] + " " + platform.python_implementation(),
        "fs": f"{_fs_type(path)} ({os.path.realpath(path)})",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def make_chain(parent: str | os.PathLike[str], name: str, depth: int, bottom: bytes = b"bottom\n",
               owner: tuple[int, int] | None = None) -> None:
    """``parent/name/d/d/.../d/f``: ``depth`` nested directories (the hostile tree of issue 16),
    built by dirfd, one mkdirat per level (no long path is ever needed), owned by ``owner``."""
    fd = os.open(parent, os.O_PATH | os.O_DIRECTORY)
    try:
        for i in range(depth):
            n = name if i == 0 else "d"
            os.mkdir(n, dir_fd=fd)
            nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if owner:
                os.fchown(fd, *owner)
        f = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        os.write(f, bottom)
        if owner:
            os.fchown(f, *owner)
        os.close(f)
    finally:
        os.close(fd)


def make_tree(top: str, dirs: int, files: int, data: bytes = b"", link: bool = False) -> int:
    """``top/d0000/f0000 ...``: ``dirs`` directories of ``files`` files holding ``data``
    (and with ``link`` a symlink ``link -> f0000`` in each); returns the entries below ``top``."""
    os.mkdir(top)
    for i in range(dirs):
        sub = os.path.join(top, f"d{i:04}")
        os.mkdir(sub)
        for j in range(files):
            fd = os.open(os.path.join(sub, f"f{j:04}"), os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC, 0o644)
            if data:
                os.write(fd, data)
            os.close(fd)
        if link:
            os.symlink("f0000", os.path.join(sub, "link"))
    return dirs * (files + 1 + link)
