"""The Node client (``node/dist/index.js``) against Node's own ``fs``, and the Python ``Client``.

The real daemon (``python -m beneathd.daemon``, Landlock on, crash journal on in a state
directory beside the root, as ``nobody`` when run as root) serves a root holding a small
file, a 1 MiB file and a 1 GiB file (``--quick``: 64 MiB). One Node process
(``node bench/node_bench.mjs SOCKET ROOT JSON``) measures, contenders interleaved within
each round: ``await c.stat(name)`` one at a time against ``fs.promises.stat`` of the same
file (absolute path) and against ``Client.stat`` in this process (a turn of the round: Node
waits on its stdin while Python runs its calls); ``readFile`` / ``writeFile`` of 1 MiB
against ``fs.promises.readFile`` of the same file and ``fs.promises.writeFile`` of a plain
file next to the root (dirty pages written back between write samples, untimed);
``createReadStream`` of the big file, every chunk consumed, against ``fs.createReadStream``;
and stat calls per second with 256 calls in flight against ``fs.promises.stat`` likewise.

    python -m bench.bench_node [--quick] [--repeats 7] [--n 2000] [--mib 1024] [--seconds 2] [--dir DIR]

Needs the built Node client: ``(cd node && npm ci)``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench._util import base_parser, fmt_ns, md_table, quantile
from bench.bench_load import IS_ROOT, REPO, DaemonProc

NODE_DIR = os.path.join(REPO, "node")
NEEDED = [os.path.join(NODE_DIR, "dist", "index.js"), os.path.join(NODE_DIR, "build", "Release", "seqpacket.node")]
SCRIPT = os.path.join(REPO, "bench", "node_bench.mjs")
INFLIGHT = 256
MID = 1 << 20


def _py_stat_round(c: object, name: str, n: int) -> float:
    """p50 (ns) of ``n`` sequential ``Client.stat`` calls, GC off as in bench._util.interleave."""
    pc = time.perf_counter_ns
    ts = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            t0 = pc()
            c.stat(name)  # type: ignore[attr-defined]
            ts.append(pc() - t0)
    finally:
        gc.enable()
    return statistics.median(ts)


def _write(path: str, size: int, owner: DaemonProc) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)
    owner.chown(path)


def _row(title: str, name: str, xs: list[float], base: list[float], fmt, rate, *, higher: bool = False,
         is_base: bool = False) -> list[object]:
    """One table row: median, min .. max, rate, ratio (ours / baseline, medians) and the
    paired per-round ratios' p25 .. p75."""
    med, bmed = statistics.median(xs), statistics.median(base)
    pr = [x / y for x, y in zip(xs, base) if y > 0]
    return [title, name, fmt(med), f"{fmt(min(xs))} .. {fmt(max(xs))}", rate(med), f"{med / bmed:.2f}x",
            "-" if is_base else f"{quantile(pr, 0.25):.2f} .. {quantile(pr, 0.75):.2f}", "-", "-"]


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--n", type=int, default=None, help="stat calls per contender per round")
    p.add_argument("--mib", type=int, default=None, help="size of the streamed file")
    p.add_argument("--seconds", type=float, default=None, help="throughput window")
    a = p.parse_args()
    missing = [f for f in NEEDED if not os.path.exists(f)]
    node = shutil.which("node")
    if missing or node is None:
        print(f"bench_node: {', '.join(os.path.relpath(f, REPO) for f in missing) or 'node'} missing: "
              "run `(cd node && npm ci)` first", file=sys.stderr)
        return 2
    mib = a.mib or (64 if a.quick else 1024)
    rounds = a.repeats or (3 if a.quick else 7)
    n = a.n or (200 if a.quick else 2000)
    seconds = a.seconds or (0.25 if a.quick else 2.0)
    mid_n = 5 if a.quick else 50
    big_rounds = 2 if a.quick else 5
    tp_rounds = 1 if a.quick else 3
    d = DaemonProc(base=None if a.dir is None else os.path.join(a.dir, "bench-node"))
    d.extra = ["--state-dir", os.path.join(d.base, "journal")]
    plain_w = os.path.join(d.base, "plain-w")
    args = {"small": "f", "mid": "mid", "midW": "mid-w", "big": "big", "plainW": plain_w,
            "statN": n, "rounds": rounds, "midN": mid_n, "midRounds": rounds, "bigRounds": big_rounds,
            "tpSeconds": seconds, "tpRounds": tp_rounds, "inflight": INFLIGHT, "warmup": 1, "pyStat": True}
    from beneathd.client import Client

    try:
        with open(os.path.join(d.root, "f"), "wb") as f:
            f.write(b"x" * 100)
        d.chown(os.path.join(d.root, "f"))
        _write(os.path.join(d.root, "mid"), MID, d)
        _write(os.path.join(d.root, "big"), mib << 20, d)
        os.sync()
        d.start()
        with Client(d.socket) as c:
            for _ in range(200):
                c.stat("f")
            proc = subprocess.Popen([node, "--expose-gc", SCRIPT, d.socket, d.root, json.dumps(args)],
                                    cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert proc.stdin is not None and proc.stdout is not None
            res = None
            for line in proc.stdout:
                msg = json.loads(line)
                if "py" in msg:
                    proc.stdin.write(f"go {_py_stat_round(c, 'f', n)}\n")
                    proc.stdin.flush()
                elif "results" in msg:
                    res = msg["results"]
            proc.stdin.close()
            rc = proc.wait(60)
        if rc != 0 or res is None:
            print(f"bench_node: node exited with {rc}", file=sys.stderr)
            return 1
        config = " ".join(d.argv()[3:]).replace(d.base, "$BASE")
    finally:
        d.stop()
        shutil.rmtree(d.base, ignore_errors=True)

    us = lambda ns: f"{ns / 1e3:.1f} us"  # noqa: E731
    per_s = lambda ns: f"{1e9 / ns:,.0f}/s"  # noqa: E731
    rows: list[list[object]] = []
    st = res["stat"]
    ours, fsp, pyc = st["Node Client.stat"], st["fs.promises.stat"], st["Python Client.stat"]
    t = "stat round trip p50"
    rows.append(_row(t, "Node Client.stat (vs fs.promises.stat)", ours, fsp, us, per_s))
    rows.append(_row(t, "Node Client.stat (vs Python Client.stat)", ours, pyc, us, per_s))
    rows.append(_row(t, "Python Client.stat (vs fs.promises.stat)", pyc, fsp, us, per_s))
    rows.append(_row(t, "fs.promises.stat", fsp, fsp, us, per_s, is_base=True))
    mibs = lambda size: (lambda ns: f"{size / (1 << 20) / (ns / 1e9):,.0f} MiB/s")  # noqa: E731
    for key, ours_n, base_n in [("readFile", "Node Client.readFile", "fs.promises.readFile"),
                                ("writeFile", "Node Client.writeFile", "fs.promises.writeFile")]:
        r = res[key]
        t = f"{key}, 1 MiB"
        rows.append(_row(t, ours_n, r[ours_n], r[base_n], fmt_ns, mibs(MID)))
        rows.append(_row(t, base_n, r[base_n], r[base_n], fmt_ns, mibs(MID), is_base=True))
    r = res["stream"]
    t = f"createReadStream, {mib} MiB (page cache warm)"
    gib = lambda ns: f"{(mib / 1024) / (ns / 1e9):.2f} GiB/s"  # noqa: E731
    ms = lambda ns: f"{ns / 1e6:.1f} ms" if ns < 1e9 else f"{ns / 1e9:.2f} s"  # noqa: E731
    rows.append(_row(t, "Node Client.createReadStream", r["Node Client.createReadStream"], r["fs.createReadStream"],
                     ms, gib))
    rows.append(_row(t, "fs.createReadStream", r["fs.createReadStream"], r["fs.createReadStream"], ms, gib,
                     is_base=True))
    r = res["tp"]
    t = f"throughput, {INFLIGHT} in flight"
    calls = lambda x: f"{x:,.0f}/s"  # noqa: E731
    rows.append(_row(t, "Node Client.stat", r["Node Client.stat"], r["fs.promises.stat"], calls, lambda x: "-"))
    rows.append(_row(t, "fs.promises.stat", r["fs.promises.stat"], r["fs.promises.stat"], calls, lambda x: "-",
                     is_base=True))

    print("### Node client\n")
    print(f"`python -m bench.bench_node{' --quick' if a.quick else ''}`: the real daemon (Landlock on, crash "
          f"journal on{', as nobody' if IS_ROOT else ''}: `beneathd.daemon {config}`), nothing pinned; one Node "
          f"process (`node --expose-gc bench/node_bench.mjs`, Node {res['node']}, V8 {res['v8']}) runs the "
          f"Node contenders, interleaved within each round (order rotated, GC run before each sample); the "
          f"Python `Client.stat` is a turn in the same rounds, measured in the Python process. stat: "
          f"{rounds} rounds of {n} sequential calls, median over the rounds of each round's p50; 1 MiB: "
          f"{rounds} rounds of {mid_n} sequential calls, mean per call; stream: {big_rounds} rounds of one "
          f"stream, 64 KiB chunks; throughput: {tp_rounds} round{'s' if tp_rounds != 1 else ''} of a "
          f"{seconds:g} s window with {INFLIGHT} calls outstanding (higher is better there). One warm-up "
          f"round each. ratio: ours over the "
          f"baseline named (medians), with the paired per-round ratios' p25 .. p75.\n")
    print(md_table(["operation", "subject", "median", "min .. max", "rate", "ratio", "paired p25 .. p75",
                    "goal", "verdict"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
