"""Cancel latency: how soon the real daemon stops a long call it is asked to stop.

The daemon (``python -m beneathd.daemon``, as ``nobody`` when run as root, Landlock on)
serves a root holding a tree of ``--dirs`` x ``--files`` small files, one file of
``--mib`` MiB and a tree of 20 x ``--dirs`` directories of 50 empty files for ``walk``. For each run a raw version 2 client sends ``cp -r`` of the tree (or
``copy_file`` of the big file, ``reflink="never"``) with ``{"progress": true}``, waits
for the first progress message that shows work done, sends ``[2, "cancel", [msgid]]``
and times the wait for the final response (``ECANCELED``). The same tree and file
copied whole (uncancelled, through ``Client``) and by ``cp -a`` give the scale. A ``walk``
is read as fast as it comes and cancelled in its tenth page (the pages double to 512
directories).

    python -m bench.bench_cancel [--quick] [--runs 20] [--dirs 200] [--files 100] [--mib 1024] [--dir DIR]
"""

from __future__ import annotations

import errno
import os
import socket
import statistics
import subprocess
import sys
import time

import msgpack

from bench._util import base_parser, make_tree, md_table, quantile
from bench.bench_load import DaemonProc

GOAL_MS = 100.0


def _send(s: socket.socket, msg: list[object]) -> None:
    s.send(b"\x00" + msgpack.packb(msg, use_bin_type=True))


def _recv(s: socket.socket) -> list[object]:
    data = s.recv(300_000)
    if not data:
        raise SystemExit("the daemon closed the connection")
    return msgpack.unpackb(data[1:], raw=False)  # type: ignore[no-any-return]


def cancel_once(sock_path: str, msgid: int, method: str, params: list[object]) -> tuple[float, int]:
    """(seconds from the cancel to the final response, entries+bytes done when cancelled)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(120)
        s.connect(sock_path)
        _send(s, [0, msgid, method, params, {"progress": True}])
        while True:
            m = _recv(s)
            if m[0] == 1:
                raise SystemExit(f"{method} finished before it could be cancelled: {m}")
            done = m[3]
            if isinstance(done, list) and (done[0] > 0 or done[1] > 0):
                break
        return _timed_cancel(s, msgid, method), int(done[0]) + int(done[1])


def _timed_cancel(s: socket.socket, msgid: int, method: str) -> float:
    """Send the cancel notification; seconds until the final response, which must be ECANCELED."""
    t0 = time.perf_counter()
    _send(s, [2, "cancel", [msgid]])
    while True:
        m = _recv(s)
        if m[0] == 1:
            break
    took = time.perf_counter() - t0
    err = m[2]
    if not (isinstance(err, dict) and err.get("errno") == errno.ECANCELED):
        raise SystemExit(f"{method}: expected ECANCELED, got {m[:3]}")
    return took


def cancel_walk_once(sock_path: str, msgid: int, pages: int) -> tuple[float, int]:
    """A walk read as fast as it comes (a ``more`` for every page): cancelled once ``pages``
    pages have arrived (pages double to 512 directories, so the last is a big one), timed
    to the final response; (seconds, tuples received before the cancel)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(120)
        s.connect(sock_path)
        _send(s, [0, msgid, "walk", [b"wtree", True, False]])
        got = seen = 0
        while seen < pages:
            m = _recv(s)
            if m[0] == 1:
                raise SystemExit(f"walk finished before it could be cancelled (after {seen} pages): {m[2]}")
            if m[0] == 3 and m[2] == "walk":
                seen += 1
                got += len(m[3])  # type: ignore[arg-type]
                _send(s, [2, "more", [msgid]])
        return _timed_cancel(s, msgid, "walk"), got


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--dirs", type=int, default=None)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--mib", type=int, default=None)
    a = p.parse_args()
    runs = a.runs or (5 if a.quick else 20)
    dirs = a.dirs or (20 if a.quick else 200)
    mib = a.mib or (512 if a.quick else 1024)
    d = DaemonProc("--no-journal", base=None if a.dir is None else os.path.join(a.dir, "bench-cancel"))
    from beneathd.client import Client

    rows: list[list[object]] = []
    try:
        src = os.path.join(d.root, "src")
        make_tree(src, dirs, a.files, b"x" * 100)
        with open(os.path.join(d.root, "big"), "wb") as f:
            chunk = b"\xa5" * (1 << 20)
            for _ in range(mib):
                f.write(chunk)
        walk_dirs = dirs * 20
        make_tree(os.path.join(d.root, "wtree"), walk_dirs, 50)
        d.chown_tree(d.root)
        d.start()
        entries = dirs * (a.files + 1)
        with Client(d.socket) as c:
            t0 = time.perf_counter()
            c.cp("src", "whole", recursive=True)
            whole_cp = time.perf_counter() - t0
            c.rm("whole", recursive=True)
            t0 = time.perf_counter()
            c.copy_file("big", "big.whole", reflink="never")
            whole_copy = time.perf_counter() - t0
            c.rm("big.whole")
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", src, os.path.join(d.base, "coreutils-copy")], check=True)
        coreutils = time.perf_counter() - t0
        subprocess.run(["rm", "-rf", os.path.join(d.base, "coreutils-copy")], check=True)
        for label, method, mk, scale in [
            (f"cp -r, {entries:,} entries", "cp", lambda i: [b"src", f"c{i}".encode(), True],
             f"whole: {whole_cp:.2f} s (cp -a {coreutils:.2f} s)"),
            (f"copy_file, {mib} MiB (reflink never)", "copy_file",
             lambda i: [b"big", f"b{i}".encode(), True, "never"], f"whole: {whole_copy:.2f} s"),
        ]:
            took = []
            for i in range(runs):
                t, _ = cancel_once(d.socket, 100 + i, method, mk(i))
                took.append(t * 1e3)
            with Client(d.socket) as c:
                for i in range(runs):
                    c.rm(f"c{i}" if method == "cp" else f"b{i}", recursive=True, force=True)
            p99 = quantile(took, 0.99)
            rows.append([label, "the daemon (raw v2 client)", f"{statistics.median(took):.1f}", f"{p99:.1f}",
                         f"{max(took):.1f}", runs, scale, f"p99 {p99:.1f} ms", f"{GOAL_MS:.0f} ms",
                         "PASS" if p99 <= GOAL_MS else "MISS"])
        with Client(d.socket) as c:
            t0 = time.perf_counter()
            n = sum(1 for _ in c.walk("wtree"))
            whole_walk = time.perf_counter() - t0
        pages = 7 if a.quick else 10
        took = [cancel_walk_once(d.socket, 500 + i, pages)[0] * 1e3 for i in range(runs)]
        p99 = quantile(took, 0.99)
        rows.append([f"walk, {walk_dirs * 51 + 1:,} entries (cancelled after {pages} pages)",
                     "the daemon (raw v2 client)", f"{statistics.median(took):.1f}", f"{p99:.1f}",
                     f"{max(took):.1f}", runs, f"whole: {whole_walk * 1e3:.0f} ms ({n:,} directories)",
                     f"p99 {p99:.1f} ms", f"{GOAL_MS:.0f} ms", "PASS" if p99 <= GOAL_MS else "MISS"])
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", d.base], check=False)
    print("### Cancel latency\n")
    print(f"`python -m bench.bench_cancel{' --quick' if a.quick else ''}`: the real daemon (Landlock on, as "
          "nobody when run as root); a raw version 2 client sends the call with progress, waits for the first "
          "progress message showing work done, sends the cancel notification and times the wait for the "
          "ECANCELED reply.\n")
    print(md_table(["operation", "subject", "p50 ms", "p99 ms", "max ms", "runs", "the same call uncancelled",
                    "ratio", "goal", "verdict"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
