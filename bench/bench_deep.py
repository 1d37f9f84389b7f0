"""Hostile trees: cp -r and rm -r of a chain of nested directories through the real daemon.

A project user can build ``d/d/d/...`` as deep as the file system allows. This builds such
a chain (by dirfd, one mkdirat per level), starts the daemon (``python -m beneathd.daemon``,
as ``nobody`` when run as root), and times ``Client.cp(recursive=True)`` then
``Client.rm(recursive=True)`` of the copy and of the chain, while a sampler reads the
daemon's fd count and VmRSS from /proc every millisecond. The same chain is also removed
by ``rm -rf`` and copied by ``cp -a`` (coreutils) for comparison. Landlock makes every
checked syscall walk the dentries up to the root's rule, so its runs are O(depth**2) and
get smaller depths.

    python -m bench.bench_deep [--quick] [--depth N] [--landlock-depth N ...] [--dir DIR]
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from bench._util import base_parser, make_chain, md_table
from bench.bench_load import DaemonProc


class Sampler:
    """Peak open fds and VmRSS of the daemon, read from /proc in a thread."""

    def __init__(self, d: DaemonProc) -> None:
        self.d = d
        self.peak_fds = self.peak_rss = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_fds = max(self.peak_fds, self.d.fd_count())
                self.peak_rss = max(self.peak_rss, self.d.rss_kib())
            except OSError:
                return
            time.sleep(0.001)

    def __enter__(self) -> "Sampler":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def timed(fn: Callable[[], object]) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        fn()
    except OSError as e:
        return time.perf_counter() - t0, f"{type(e).__name__}: {e.strerror}"
    return time.perf_counter() - t0, "ok"


def run_daemon_case(base: Path, depth: int, landlock: bool, rows: list[list[object]]) -> None:
    from beneathd.client import Client

    work = base / f"{'ll' if landlock else 'plain'}-{depth}"
    work.mkdir()
    d = DaemonProc("--no-journal", *(() if landlock else ("--no-landlock",)), base=str(work))
    owner = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam(d.user)
        owner = (nobody.pw_uid, nobody.pw_gid)
    label = "daemon, Landlock" if landlock else "daemon, no Landlock"
    try:
        d.start()
        make_chain(d.root, "src", depth, owner=owner)
        with Client(d.socket) as c:
            c.stat(".")
            idle_fds, idle_rss = d.fd_count(), d.rss_kib()
            for op, fn in (("cp -r", lambda: c.cp("src", "copy", recursive=True)),
                           ("rm -r (the copy)", lambda: c.rm("copy", recursive=True)),
                           ("rm -r (the chain)", lambda: c.rm("src", recursive=True))):
                with Sampler(d) as s:
                    secs, outcome = timed(fn)
                rows.append([label, depth, op, f"{secs:.2f} s", f"{secs / depth * 1e6:.0f} us",
                             s.peak_fds - idle_fds, f"{s.peak_rss / 1024:.1f} MiB ({idle_rss / 1024:.1f} idle)",
                             outcome])
            alive = d.alive()
            after = d.fd_count() if alive else -1
            rows.append([label, depth, "after: daemon alive, fds back to idle", "", "", after - idle_fds, "",
                         "yes" if alive and after == idle_fds else f"NO (alive={alive})"])
    finally:
        d.stop(30)
        subprocess.run(["rm", "-rf", str(work)], check=False)  # deep: not shutil.rmtree


def run_coreutils_case(base: Path, depth: int, rows: list[list[object]]) -> None:
    work = base / f"coreutils-{depth}"
    work.mkdir()
    make_chain(work, "src", depth)
    t0 = time.perf_counter()
    r = subprocess.run(["cp", "-a", "src", "copy"], cwd=work, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    err = r.stderr.strip().rsplit(": ", 1)[-1] if r.returncode else "ok"
    rows.append(["coreutils", depth, "cp -a", f"{secs:.2f} s", f"{secs / depth * 1e6:.0f} us", "", "", err])
    for what in ("copy", "src"):
        if not os.path.lexists(work / what):
            continue
        t0 = time.perf_counter()
        r = subprocess.run(["rm", "-rf", what], cwd=work, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        rows.append(["coreutils", depth, f"rm -rf ({'the partial copy' if what == 'copy' else 'the chain'})",
                     f"{secs:.2f} s", f"{secs / depth * 1e6:.0f} us", "", "",
                     "ok" if r.returncode == 0 else r.stderr.strip()[-80:]])
    subprocess.run(["rm", "-rf", str(work)], check=False)


def main() -> int:
    p = base_parser(__doc__)
    p.add_argument("--depth", type=int, default=None, help="chain depth without Landlock (default 100000)")
    p.add_argument("--landlock-depth", type=int, action="append", default=None,
                   help="chain depths under Landlock (default 1000 and 3000)")
    args = p.parse_args()
    depth = args.depth or (3000 if args.quick else 100_000)
    ll_depths = args.landlock_depth or ([1000] if args.quick else [1000, 3000])
    base = Path(tempfile.mkdtemp(prefix="bench-deep-", dir=args.dir))
    os.chmod(base, 0o755)
    rows: list[list[object]] = []
    try:
        run_daemon_case(base, depth, False, rows)
        for d in ll_depths:
            run_daemon_case(base, d, True, rows)
        run_coreutils_case(base, depth, rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cmd = "python -m bench.bench_deep" + (" --quick" if args.quick else "")
    print("### Hostile trees: cp -r and rm -r of a deep chain through the daemon\n")
    print(f"Command: `{cmd}`; chains `d/d/.../d/f` on {base.parent}, one run each; the daemon's "
          "open fds and VmRSS sampled every 1 ms (peak fds counted above the idle daemon's). "
          "Under Landlock every checked syscall costs O(depth) (docs/SECURITY.md, Hostile trees), "
          "so those runs use smaller chains.\n")
    print(md_table(["who", "depth", "operation", "time", "per level", "peak fds held", "peak RSS", "outcome"],
                   rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
