"""Run every benchmark script in ``bench/`` and write ``bench/RESULTS.md``.

    python -m bench [--quick] [--only NAME ...] [--out PATH] [--pin CPU]

Each ``bench/bench_*.py`` runs as its own process (``python -m bench.<name>``, with
``--quick`` passed through) and prints a Markdown section; this collects them under a
header with the machine, the date and the exact commands.  A script that fails is
recorded as failed, with its exit status and the tail of its stderr, and the rest go on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import time

from bench._util import machine_info, md_table

HERE = os.path.dirname(os.path.abspath(__file__))
# the in-process figures first, the long-running ones last
ORDER = ["bench_root", "bench_client", "bench_coldstart", "bench_tree", "bench_copy"]


def scripts() -> list[str]:
    found = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))
    return [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]


NOTES_BEGIN = "<!-- notes: kept across runs of python -m bench; edit by hand -->"
NOTES_END = "<!-- /notes -->"


def goal_rows(markdown: str) -> list[list[str]]:
    """Every table row that has a goal verdict (PASS / MISS), across all sections."""
    out: list[list[str]] = []
    header: list[str] | None = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|- "):
            continue
        row = dict(zip(header, cells))
        if row.get("verdict") in ("PASS", "MISS"):
            out.append([row.get("operation", "?"), row.get("subject", "?"), row.get("ratio", "?"),
                        row.get("goal", "?"), row["verdict"]])
    return out


SECTION_RE = re.compile(r"<!-- section (\S+) (.*?) -->\n(.*?)\n<!-- /section -->", re.S)


def kept_sections(path: str) -> dict[str, tuple[str, str]]:
    """name -> (when, markdown) of each script's section in an earlier RESULTS.md."""
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        return {}
    return {m.group(1): (m.group(2), m.group(3)) for m in SECTION_RE.finditer(old)}


def kept_notes(path: str) -> str:
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        return ""
    i, j = old.find(NOTES_BEGIN), old.find(NOTES_END)
    return old[i:j + len(NOTES_END)] if 0 <= i < j else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats everywhere")
    p.add_argument("--only", nargs="*", default=None,
                   help="script names (e.g. bench_root); the other scripts' sections of an "
                        "existing RESULTS.md are kept, marked with their own date")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    a = p.parse_args(argv)

    todo = [s for s in scripts() if not a.only or s in a.only or s.removeprefix("bench_") in a.only]
    parent = os.path.dirname(HERE)
    env = dict(os.environ)
    env["PYTHONPATH"] = parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine_info(os.environ.get("TMPDIR", "/tmp"))
    sections: list[str] = []
    summary: list[list[str]] = []
    stamp = f"{started:%Y-%m-%d %H:%M} UTC"
    old = kept_sections(a.out) if a.only else {}
    for name in scripts():
        if name in todo or name not in old:
            continue
        when, text = old[name]
        sections.append(f"<!-- section {name} {when} -->\n{text}\n<!-- /section -->")
        summary.append([name, f"kept from the run of {when}", "-"])
    for name in todo:
        # pass --quick only to a script that knows it (one that does not runs in full)
        with open(os.path.join(HERE, name + ".py")) as f:
            quick = a.quick and "--quick" in f.read()
        cmd = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if quick else [])
        shown = "python -m bench." + name + (" --quick" if quick else "")
        print(f"== {shown}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        took = time.monotonic() - t0
        sys.stderr.write(r.stderr)
        if r.returncode == 0:
            sections.append(f"<!-- section {name} {stamp} -->\n{r.stdout.strip()}\n<!-- /section -->")
            summary.append([name, "ok", f"{took:.1f} s"])
        else:
            tail = "\n".join(r.stderr.strip().splitlines()[-15:])
            sections.append(f"<!-- section {name} {stamp} -->\n### {name}: FAILED (exit {r.returncode})"
                            f"\n\n```\n{tail}\n```\n<!-- /section -->")
            summary.append([name, f"FAILED ({r.returncode})", f"{took:.1f} s"])
        print(sections[-1] + "\n", flush=True)

    head = [
        "# beneathd benchmark results",
        "",
        "Written by `python -m bench" + "".join(" " + x for x in (sys.argv[1:] if argv is None else argv)) + "` "
        f"(from the repository root, with the project's venv) on {stamp}.",
        "Every figure is a side-by-side comparison measured in one run: medians over "
        "interleaved repeats, with the spread. Re-run a single table with the command shown "
        "above it.",
        "",
        md_table(["machine", ""], [[k, v] for k, v in info.items()]),
        "",
        md_table(["script", "status", "wall time"], summary),
        "",
    ]
    body = "\n\n".join(sections)
    goals = goal_rows(body)
    misses = sum(1 for g in goals if g[4] == "MISS")
    head += [
        f"## Goals: {len(goals) - misses} met, {misses} missed",
        "",
        md_table(["operation", "subject", "ratio", "goal", "verdict"], goals) if goals else "(no goal rows)",
        "",
    ]
    notes = kept_notes(a.out) or f"{NOTES_BEGIN}\n## Notes\n\n(none yet)\n{NOTES_END}"
    text = "\n".join(head) + "\n" + notes + "\n\n## Tables\n\n" + body + "\n"
    if not a.no_write:
        with open(a.out, "w") as f:
            f.write(text)
        print(f"wrote {a.out}", file=sys.stderr)
    return 0 if all(s[1] == "ok" or s[1].startswith("kept") for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
