"""Cost by depth: ``Root.stat`` / ``lstat`` / ``open`` of a file at depth 1, 2, 4 and 8
against ``os.stat`` / ``os.lstat`` / ``open`` with ``dir_fd`` on the same directory, and
the kernel floor measured in C in the same run (``bench/c/floor.c``: ``openat2`` +
``fstat`` + ``close`` against one ``fstatat``, no Python in the loop).

One ``openat2`` resolves any depth, so ``Root`` should stay flat: goal depth 8 at most
1.1x depth 2 (per operation); and ``lstat`` of a multi-component path at most 1.1x
``stat``'s cost. A per-component walk (Go's ``os.Root`` here: stat 1.5 us at depth 1,
20 us at depth 8) grows with depth; so does the emulated resolver, measured beside it.

    python -m bench.bench_depth [--quick] [--repeats N] [--dir DIR]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

from beneathd.daemon import Root

from bench._util import Case, base_parser, calibrate, fmt_ns, interleave, md_table, verdict

DEPTHS = (1, 2, 4, 8)
GOAL_FLAT = 1.1
#: issue 13: a multi-component stat/lstat within 10 % of openat2 + fstat + close in C
GOAL_FLOOR = 1.1


def _path(depth: int) -> str:
    return "/".join(["d"] * (depth - 1) + ["f"])


def _floor(top: str, n: int) -> dict[str, tuple[float, float, float]]:
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c", "floor.c")
    exe = os.path.join(top, "floor")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {}
    subprocess.run([cc, "-O2", "-o", exe, here], check=True)
    out = subprocess.run([exe, top, str(n), *(_path(d) for d in DEPTHS)], check=True, capture_output=True,
                         text=True).stdout
    res = {}
    for line in out.splitlines():
        p, a, b, c = line.split()
        res[p] = (float(a), float(b), float(c))
    return res


def main() -> int:
    p = base_parser(__doc__)
    a = p.parse_args()
    repeats = a.repeats or (3 if a.quick else 9)
    top = tempfile.mkdtemp(prefix="bench-depth-", dir=a.dir)
    try:
        os.makedirs(os.path.join(top, *(["d"] * 7)))
        for d in DEPTHS:
            with open(os.path.join(top, _path(d)), "wb") as f:
                f.write(b"x" * 100)
        dfd = os.open(top, os.O_PATH | os.O_DIRECTORY)
        root = Root(top)
        emu = Root(top, resolver="emulated")
        cases: list[Case] = []
        for d in DEPTHS:
            path = _path(d)

            def mk(fn, path=path):  # type: ignore[no-untyped-def]
                def run(k: int) -> None:
                    for _ in range(k):
                        fn(path)
                return run

            cases += [Case(f"os.stat d{d}", mk(lambda q: os.stat(q, dir_fd=dfd))),
                      Case(f"Root.stat d{d}", mk(root.stat)),
                      Case(f"os.lstat d{d}", mk(lambda q: os.lstat(q, dir_fd=dfd))),
                      Case(f"Root.lstat d{d}", mk(root.lstat)),
                      Case(f"open d{d}", mk(lambda q: os.close(os.open(q, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)))),
                      Case(f"Root.open d{d}", mk(lambda q: root.open(q, "rb", buffering=0).close())),
                      Case(f"py floor d{d}", mk(_py_floor(root), os.fsencode(path))),
                      Case(f"emulated.stat d{d}", mk(emu.stat)),
                      Case(f"emulated.lstat d{d}", mk(emu.lstat)),
                      Case(f"emulated.open d{d}", mk(lambda q: emu.open(q, "rb", buffering=0).close()))]
        n = a.n if getattr(a, "n", None) else calibrate(cases[1], 20e6 if a.quick else 60e6)
        res = interleave(cases, repeats, n, warmup=1)
        floor = _floor(top, 20000 if a.quick else 100000)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    rows: list[list[object]] = []
    per = {k: v.median for k, v in res.items()}  # (interleave gives the time per call)
    for op, plain in (("stat", "os.stat"), ("lstat", "os.lstat"), ("open", "open")):
        for d in DEPTHS:
            ours = per[f"Root.{op} d{d}"]
            flat = ours / per[f"Root.{op} d2"] if d > 2 else None
            fl = floor.get(_path(d))
            kern = "" if fl is None else f"{fl[0]:.0f} / {fl[2 if op == 'lstat' else 1]:.0f} ns"
            rows.append([f"{op} at depth {d}", f"Root.{op}", fmt_ns(ours), fmt_ns(per[f"{plain} d{d}"]),
                         f"{ours / per[f'{plain} d{d}']:.2f}x", kern,
                         f"{flat:.2f}x" if flat is not None else "-",
                         f"{GOAL_FLAT}x" if flat is not None else "-",
                         verdict(flat, GOAL_FLAT) if flat is not None else "-"])
    for d in DEPTHS[1:]:
        ratio = per[f"Root.lstat d{d}"] / per[f"Root.stat d{d}"]
        rows.append([f"lstat vs stat at depth {d}", "Root.lstat", fmt_ns(per[f"Root.lstat d{d}"]),
                     fmt_ns(per[f"Root.stat d{d}"]), "-", "-", f"{ratio:.2f}x", f"{GOAL_FLAT}x",
                     verdict(ratio, GOAL_FLAT)])
    for op in ("stat", "lstat"):  # issue 13: within 10 % of the kernel's floor
        d = 2
        fl = floor.get(_path(d))
        if fl is None:
            continue
        kfloor = fl[2 if op == "lstat" else 1]
        ours = per[f"Root.{op} d{d}"]
        rows.append([f"{op} at depth {d} vs the kernel floor", f"Root.{op}", fmt_ns(ours),
                     f"py floor {fmt_ns(per[f'py floor d{d}'])}", "-", f"{kfloor:.0f} ns", f"{ours / kfloor:.2f}x",
                     f"{GOAL_FLOOR}x", verdict(ours / kfloor, GOAL_FLOOR)])
    print("### Cost by depth\n")
    print(f"`python -m bench.bench_depth{' --quick' if a.quick else ''}`: {repeats} interleaved rounds of {n} calls "
          "per case, median time per call. `plain` is `os.*` with `dir_fd` on the same directory (no beneath check); "
          "`kernel floor` is C (`bench/c/floor.c`, best of 5): one `fstatat` / `openat2` + `fstat` + `close` "
          "(`O_NOFOLLOW` for lstat). `ratio` in the goal columns: against the same operation at depth 2 (and for "
          "the lstat vs stat rows, lstat against stat; for the last two, against the C floor's openat2 + fstat + "
          "close, with `py floor` beside it: the same three calls from Python with nothing else, "
          "`bn_openat2` + `os.stat(fd)` + `os.close`).\n")
    print(md_table(["operation", "subject", "median", "plain", "vs plain", "kernel floor: fstatat / openat2",
                    "ratio", "goal", "verdict"], rows))
    emu_rows: list[list[object]] = []
    for op, plain in (("stat", "os.stat"), ("lstat", "os.lstat"), ("open", "open")):
        for d in DEPTHS:
            e, o, pl = per[f"emulated.{op} d{d}"], per[f"Root.{op} d{d}"], per[f"{plain} d{d}"]
            emu_rows.append([f"{op} at depth {d}", fmt_ns(o), fmt_ns(e), fmt_ns(pl), f"{e / o:.2f}x", f"{e / pl:.2f}x"])
    print("\nThe two resolvers side by side (same run): `Root(resolver=\"emulated\")` steps one "
          "`O_PATH|O_NOFOLLOW` component at a time and checks the last directory through "
          "`/proc/self/fd`, so it grows with depth where openat2 stays flat. No goal: it is the "
          "opt-in fallback for kernels and sandboxes without openat2.\n")
    print(md_table(["operation", "Root (openat2)", "Root (emulated)", "plain", "emulated vs openat2",
                    "emulated vs plain"], emu_rows))
    return 0


def _py_floor(root: Root) -> Callable[[bytes], None]:
    """What the three syscalls cost called from Python with nothing around them."""
    from beneathd._native import lib

    fd, rx = root.fileno(), root._rx
    o_path = os.O_PATH

    def run(b: bytes) -> None:
        f = lib.bn_openat2(fd, b, o_path, 0, rx)
        os.stat(f)
        os.close(f)
    return run


if __name__ == "__main__":
    sys.exit(main())
