"""The real daemon out of file descriptors (``RLIMIT_NOFILE`` 64, set with ``prlimit``).

Calls that need an fd past the limit fail with ``OSError(EMFILE)`` naming the limit, on a
connection that stays usable; connections past the limit are refused with one ``EMFILE``
datagram naming it (a spare fd is kept for that: closed, the connection accepted, told,
closed, the spare taken again) instead of waiting unanswered in the listen backlog; the
daemon does not spin meanwhile (its CPU time is measured) and logs the episode once; once
fds are freed it serves new connections and calls again, and its fd count is back where
it was (docs/SECURITY.md, "Faults and hostile trees").
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import time
from pathlib import Path
from typing import Iterator

import msgpack
import pytest

from beneathd.client import Client
from beneathd.protocol.codec import MAX_FRAME
from test_daemon import Daemon, chown_tree, start_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests start the daemon as root")

LIMIT = 64


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_bytes(b"x" * 1000)
    chown_tree(root)
    with start_daemon(tmp_path, "--max-connections", "1000", root=root,
                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))) as d:
        yield d


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def raw(d: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(d.sock)
    try:
        s.send(b"\x00" + msgpack.packb([0, 1, "exists", [b"file"]]))
    except BrokenPipeError:
        pass  # refused and closed already: the refusal waits to be read
    return s


def answer(s: socket.socket, timeout: float) -> list | None:
    """The first message the daemon sent on ``s``, or None if nothing came in time."""
    s.settimeout(timeout)
    try:
        data = s.recv(MAX_FRAME + 1)
    except (TimeoutError, socket.timeout):
        return None
    return msgpack.unpackb(data[1:], raw=False) if data else []


def check_emfile(e: OSError) -> None:
    assert e.errno == errno.EMFILE, repr(e)
    assert "RLIMIT_NOFILE" in str(e) and str(LIMIT) in str(e), str(e)


def test_calls_past_the_fd_limit_get_emfile_naming_it(daemon: Daemon) -> None:
    """Atomic writers hold fds in the daemon (three each; at most 64 per connection):
    opening them until the daemon runs out gives EMFILE naming the limit and the path, and
    the same connection serves on; with the last fds taken by connections, ``open`` and
    ``read_file`` get EMFILE too; closing the writers and connections frees every fd."""
    before = daemon.fds()
    with Client(daemon.sock, timeout=10) as c:
        writers = []
        with pytest.raises(OSError) as ei:
            for i in range(200):
                writers.append(c.open(f"w{i}", "wb", atomic=True))
        check_emfile(ei.value)
        assert ei.value.filename == f"w{len(writers)}"
        assert 5 < len(writers) < 60
        assert c.exists("file") and c.stat("file").st_size == 1000  # no fd needed: served
        socks = []
        for _ in range(LIMIT):  # the last fds, one connection each, until one is refused
            socks.append(raw(daemon))
            r = answer(socks[-1], 5)
            assert r is not None
            if r[1] is None:
                assert r[2]["code"] == "EMFILE"
                break
        else:
            raise AssertionError("no connection was refused")
        with Client(daemon.sock, timeout=5) as other, pytest.raises(OSError) as ei:
            other.exists("file")  # a new client is told why
        check_emfile(ei.value)
        for call in (lambda: c.open("file", "rb"), lambda: c.read_file("file"),
                     lambda: c.open("w-new", "wb", atomic=True)):
            with pytest.raises(OSError) as ei:
                call()
            check_emfile(ei.value)
        for s in socks:
            s.close()
        for w in writers[: len(writers) // 2]:
            w.write(b"published")
            w.close()
        assert c.read_file("file") == b"x" * 1000  # fds again
        for w in writers[len(writers) // 2:]:
            w.discard()
    assert daemon.fds() <= before
    with Client(daemon.sock) as c:
        assert c.read_file("w0") == b"published"
        assert sorted(c.listdir(".")) == sorted(["file"] + [f"w{i}" for i in range(len(writers) // 2)])
    assert daemon.alive() and "Traceback" not in daemon.stderr()


def test_connections_past_the_fd_limit_are_refused_not_left_waiting(daemon: Daemon) -> None:
    """More connections than fds: those the daemon cannot take get one EMFILE datagram
    naming the limit and EOF, at once; the daemon's CPU stays low while it is out of fds
    (no busy accept loop) and it logs the episode once; once the connections close it
    accepts again and its fds are back to where they were."""
    before = daemon.fds()
    log_before = daemon.stderr().count("accept:")
    socks = [raw(daemon) for _ in range(100)]
    served, refused, silent = 0, 0, 0
    for s in socks:
        r = answer(s, 2)
        if r is None:
            silent += 1
        elif r[1] is None:
            refused += 1
            assert r[2]["code"] == "EMFILE" and "RLIMIT_NOFILE" in r[2]["message"], r
            assert answer(s, 2) == []  # then EOF
        else:
            served += 1
            assert r[1:] == [1, None, True]
    cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    late = [raw(daemon) for _ in range(5)]  # more, while the daemon is out of fds
    time.sleep(2)
    cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0)
    late_answers = [answer(s, 2) for s in late]
    print(f"100 connections at RLIMIT_NOFILE {LIMIT}: {served} served, {refused} refused with EMFILE, "
          f"{silent} unanswered; daemon CPU while out of fds: {cpu * 100:.1f}%; "
          f"log lines: {daemon.stderr().count('accept:') - log_before}")
    assert silent == 0 and refused >= 40 and 40 < served < LIMIT
    assert all(a is not None and a[1] is None and a[2]["code"] == "EMFILE" for a in late_answers), late_answers
    assert cpu < 0.1
    assert daemon.stderr().count("accept:") - log_before <= 2
    for s in socks + late:
        s.close()
    deadline = time.monotonic() + 5
    while daemon.fds() > before and time.monotonic() < deadline:
        time.sleep(0.05)  # the daemon sees each EOF and closes
    with Client(daemon.sock, timeout=10) as c:
        assert c.read_file("file") == b"x" * 1000
    assert daemon.fds() <= before
    assert daemon.alive() and "Traceback" not in daemon.stderr()
