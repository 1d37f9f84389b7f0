"""Cold start and idle memory of one socket-activated beneathd.

Plays PID 1's part as the .socket unit does: holds a listening SOCK_SEQPACKET socket and
hands it to ``systemd-socket-activate`` (or, without it, execs the daemon directly with
LISTEN_FDS=1), then measures

* cold start: ``connect()`` of the first client to its first reply (process start,
  imports, root open, privilege drop, Landlock, trio start, accept, one ``stat``);
  goal < 300 ms;
* idle RSS (VmRSS) and PSS of the daemon after it has served and sits idle; goal <= 30 MB.

Prints a Markdown table. Usage: ``python bench/bench_coldstart.py [--runs 10]``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def request(path: str) -> None:
    """One stat of '.', through Client if it exists, else a raw msgpack request."""
    try:
        from beneathd.client import Client
    except ImportError:
        Client = None  # type: ignore[assignment]
    if Client is not None:
        with Client(path) as fs:
            fs.stat(".")
        return
    import msgpack

    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as c:
        c.settimeout(30)
        c.connect(path)
        c.send(msgpack.packb([0, 1, "stat", [b"."]], use_bin_type=True))
        reply = msgpack.unpackb(c.recv(1 << 18), raw=False)
        if reply[2] is not None:
            raise RuntimeError(f"error reply: {reply}")


def mem_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle-wait", type=float, default=1.0, help="seconds idle before reading memory")
    args = ap.parse_args()

    try:
        import beneathd.daemon.cli  # noqa: F401
    except ImportError:
        print("beneathd.daemon.cli is not there yet: nothing to measure", file=sys.stderr)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    os.chmod(tmp, 0o755)
    root = tmp / "root"
    root.mkdir()
    daemon = [sys.executable, "-m", "beneathd.daemon", "--root", str(root), "--idle-exit", "60"]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        daemon += ["--user", "nobody", "--allow-uid", "0"]
    activate = shutil.which("systemd-socket-activate")
    launcher = [activate, "--seqpacket"] if activate else []

    path = str(tmp / "bench.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(128)

    colds: list[float] = []
    mems: list[tuple[int, int]] = []
    log = open(tmp / "daemon.log", "ab")
    for _ in range(args.runs):
        proc = subprocess.Popen(
            ["sh", "-c", 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *launcher, *daemon],
            stdin=listener.fileno(), stdout=log, stderr=log)
        time.sleep(0.2)  # the activator is up and waiting; the daemon is not started yet
        t0 = time.perf_counter()
        request(path)
        colds.append(time.perf_counter() - t0)
        time.sleep(args.idle_wait)
        mems.append(mem_kib(proc.pid))  # the activator exec'd into the daemon: same pid
        proc.terminate()
        if proc.wait(15) not in (0, -15):
            print(f"daemon exited {proc.returncode}; see {tmp / 'daemon.log'}", file=sys.stderr)
    log.close()
    listener.close()

    ms = sorted(c * 1000 for c in colds)
    rss = statistics.median(m[0] for m in mems) / 1024
    pss = statistics.median(m[1] for m in mems) / 1024
    how = "systemd-socket-activate" if activate else "direct exec with LISTEN_FDS"
    print(f"Cold start via {how}, {args.runs} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| measure | p50 | min | max | goal |")
    print("|---|---|---|---|---|")
    print(f"| cold start, first connect to first reply | {statistics.median(ms):.0f} ms | {ms[0]:.0f} ms "
          f"| {ms[-1]:.0f} ms | < 300 ms |")
    print(f"| idle RSS (VmRSS) | {rss:.1f} MiB | {min(m[0] for m in mems) / 1024:.1f} MiB "
          f"| {max(m[0] for m in mems) / 1024:.1f} MiB | <= 30 MB |")
    print(f"| idle PSS (shared pages split) | {pss:.1f} MiB | | | |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
