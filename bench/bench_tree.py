"""Tree operations: ``Root.rm(recursive=True)`` vs ``rm -rf`` and ``shutil.rmtree``;
``Root.cp(recursive=True)`` vs ``cp -a`` and ``shutil.copytree(symlinks=True)``.

The tree is DIRS directories x FILES small files (64 bytes each) plus one symlink per
directory.  For ``rm`` the tree is built fresh before every timed run (untimed, by
``cp -a`` from a template) and ``sync``ed, so that no contender pays for another's
writeback; for ``cp`` the source is built once and the copy is removed and ``sync``ed
after every run (untimed).  Page caches cannot be dropped (no root): every run is warm.
The command-line tools are timed as a subprocess (fork + exec included, ~1 ms), which is
what a backend calling them would pay.  Goals (issue 6): rm <= 1.2x ``rm -rf``,
cp <= 1.5x ``cp -a``.

    python -m bench.bench_tree [--quick] [--repeats N] [--dirs D --files F] [--dir DIR]
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
                         make_tree, paired_ratios, quantile, run_cmd, verdict)

RM_GOAL = 1.2
CP_GOAL = 1.5
DATA = b"x" * 64


def build_template(path: str, dirs: int, files: int) -> None:
    make_tree(path, dirs, files, DATA, link=True)


def count(path: str) -> int:
    n = 0
    for _, ds, fs in os.walk(path):
        n += len(ds) + len(fs)
    return n


def row(title: str, subj: str, base: str, res, goal: float | None, ref: str) -> list[str]:
    s, b = res[subj], res[base]
    ratio = s.median / b.median
    pr = paired_ratios(s, b)
    return [title, subj, f"{fmt_s(s.median)}", f"{fmt_s(s.min)} .. {fmt_s(s.max)}",
            f"{ratio:.2f}x vs {ref}", f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}",
            f"{goal}x" if goal else "-", verdict(ratio, goal)]


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--dirs", type=int, default=None)
    p.add_argument("--files", type=int, default=None, help="files per directory")
    p.add_argument("--only", choices=["rm", "cp"], default=None)
    a = p.parse_args(argv)
    apply_pin(a.pin)
    dirs = a.dirs or (20 if a.quick else 200)
    files = a.files or 100
    repeats = a.repeats or (5 if a.quick else 5)
    top = tempfile.mkdtemp(prefix="bench-tree-", dir=a.dir)
    table: list[list[str]] = []
    try:
        tmpl = os.path.join(top, "template")
        build_template(tmpl, dirs, files)
        entries = count(tmpl)
        root = Root(top)
        t = os.path.join(top, "t")

        # ---- rm -r -------------------------------------------------------------------
        def fresh() -> None:
            run_cmd(["cp", "-a", tmpl, t])
            drop_dirty()

        def gone() -> None:
            if os.path.lexists(t):
                raise SystemExit(f"rm contender left {t} behind")
            drop_dirty()

        rm_cases = [
            Case("rm -rf", lambda n: run_cmd(["rm", "-rf", t]), fresh, gone),
            Case("shutil.rmtree", lambda n: shutil.rmtree(t), fresh, gone),
            Case("Root.rm(recursive=True)", lambda n: root.rm("t", recursive=True), fresh, gone),
        ]
        def family(name: str, cases: list[Case], goal: float) -> None:
            """Run one family interleaved; its rows, each against the coreutils command."""
            if a.only not in (None, name):
                return
            t0 = time.monotonic()
            res = interleave(cases, repeats, 1, warmup=1)
            print(f"  {name} done in {time.monotonic() - t0:.1f}s", file=sys.stderr)
            ref = cases[0].name
            for i, case in enumerate(reversed(cases)):
                table.append(row(f"{name} -r, {entries} entries", case.name, ref, res, goal if i == 0 else None, ref))

        family("rm", rm_cases, RM_GOAL)

        # ---- cp -r -------------------------------------------------------------------
        c = os.path.join(top, "c")

        def clean() -> None:
            if count(c) != entries:
                raise SystemExit(f"cp contender made {count(c)} entries, expected {entries}")
            run_cmd(["rm", "-rf", c])
            drop_dirty()

        cp_cases = [
            Case("cp -a", lambda n: run_cmd(["cp", "-a", tmpl, c]), drop_dirty, clean),
            Case("shutil.copytree(symlinks=True)", lambda n: shutil.copytree(tmpl, c, symlinks=True),
                 drop_dirty, clean),
            Case("Root.cp(recursive=True)", lambda n: root.cp("template", "c", recursive=True),
                 drop_dirty, clean),
        ]
        family("cp", cp_cases, CP_GOAL)
        root.close()
    finally:
        subprocess.run(["rm", "-rf", top])

    print("### Tree operations: rm -r and cp -r\n")
    print(f"Command: `python -m bench.bench_tree{' --quick' if a.quick else ''}`; tree = {dirs} dirs x "
          f"{files} files of 64 B + 1 symlink per dir ({entries} entries); {repeats} interleaved "
          "runs per contender after 1 warm-up round, each on a freshly built, synced tree (warm "
          "cache); median wall time, spread min .. max; paired = p25 .. p75 of per-round ratios. "
          "Tools run as subprocesses (fork+exec included).\n")
    print(md_table(["operation", "subject", "median", "min..max", "ratio", "paired p25..p75",
                    "goal", "verdict"], table))
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
