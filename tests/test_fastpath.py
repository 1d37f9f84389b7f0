"""The daemon's fast path: drained bursts, inline replies, fairness, watchdog timeouts."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import msgpack

from backends import server_thread
from beneathd.client import Client
from beneathd.protocol.codec import MAX_FRAME


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    s.connect(path)
    return s


def _req(i: int, method: str, params: list) -> bytes:
    return b"\x00" + msgpack.packb([0, i, method, params], use_bin_type=True)


def _reply(s: socket.socket) -> list:
    data = s.recv(MAX_FRAME + 1)
    assert data, "connection closed"
    return msgpack.unpackb(data[1:], raw=False)


def test_burst_each_request_gets_its_reply(tmp_path: Path) -> None:
    """Hundreds of requests sent before reading (more than one wakeup's budget): every
    one is answered, small ones inline, long ones out of order."""
    (tmp_path / "f").write_bytes(b"x" * 10)
    with server_thread(tmp_path) as path, _raw(path) as s:
        n = 300
        for i in range(n):
            if i % 50 == 7:
                s.send(_req(i, "listdir", [b"."]))  # long: a worker thread
            elif i % 3:
                s.send(_req(i, "stat", [b"f", True]))
            else:
                s.send(_req(i, "stat", [b"missing", True]))
        seen = {}
        for _ in range(n):
            msg = _reply(s)
            assert msg[0] == 1 and msg[1] not in seen
            seen[msg[1]] = msg
        assert sorted(seen) == list(range(n))
        for i, msg in seen.items():
            if i % 50 == 7:
                assert msg[2] is None and b"f" in msg[3]
            elif i % 3:
                assert msg[2] is None and msg[3][6] == 10
            else:
                assert msg[2]["code"] == "ENOENT" and msg[3] is None


def test_busy_client_does_not_starve_another(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with server_thread(tmp_path) as path:
        stop = threading.Event()

        def flood() -> None:
            with Client(path) as c:
                while not stop.is_set():
                    pend = [c.submit("stat", "f") for _ in range(32)]
                    for p in pend:
                        p.result()

        ts = [threading.Thread(target=flood) for _ in range(2)]
        for t in ts:
            t.start()
        try:
            time.sleep(0.2)
            with Client(path) as c:
                worst = 0.0
                for _ in range(50):
                    t0 = time.monotonic()
                    assert c.stat("f").st_size == 1
                    worst = max(worst, time.monotonic() - t0)
            assert worst < 2.0, worst
        finally:
            stop.set()
            for t in ts:
                t.join(10)


def test_idle_connection_closed(tmp_path: Path) -> None:
    with server_thread(tmp_path, idle_timeout=0.5) as path, _raw(path) as s:
        s.send(_req(1, "stat", [b".", True]))
        assert _reply(s)[2] is None
        t0 = time.monotonic()
        assert s.recv(MAX_FRAME + 1) == b""
        assert 0.3 < time.monotonic() - t0 < 5


def test_busy_connection_not_idle(tmp_path: Path) -> None:
    with server_thread(tmp_path, idle_timeout=0.5) as path, Client(path) as c:
        first = c._conn
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            c.stat(".")
            time.sleep(0.05)
        assert c._sock is not None and c._conn is first  # never reconnected


def test_partial_message_times_out(tmp_path: Path) -> None:
    with server_thread(tmp_path, partial_timeout=0.5) as path, _raw(path) as s:
        s.send(b"\x01" + b"\x94\x00")  # MORE: the rest never comes
        t0 = time.monotonic()
        assert s.recv(MAX_FRAME + 1) == b""
        assert 0.3 < time.monotonic() - t0 < 5


def test_idle_after_long_request(tmp_path: Path) -> None:
    """The idle countdown starts when the last long request is done."""
    (tmp_path / "d").mkdir()
    with server_thread(tmp_path, idle_timeout=0.5) as path, _raw(path) as s:
        s.send(_req(1, "listdir", [b"d"]))
        assert _reply(s)[2] is None
        t0 = time.monotonic()
        assert s.recv(MAX_FRAME + 1) == b""
        assert 0.3 < time.monotonic() - t0 < 5


def test_slow_reader_dropped_on_inline_replies(tmp_path: Path) -> None:
    """Inline replies that do not fit go out through the awaited send: a peer that does
    not read is dropped after send_timeout, and others are served meanwhile."""
    (tmp_path / "f").write_bytes(b"x")
    with server_thread(tmp_path, send_timeout=0.5) as path:
        s = _raw(path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(0.2)
        try:
            for i in range(5000):
                s.send(_req(i, "stat", [b"f", True]))
        except OSError:
            pass
        with Client(path) as c:
            assert c.stat("f").st_size == 1
        s.settimeout(10)
        closed = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if s.recv(MAX_FRAME + 1) == b"":
                    closed = True
                    break
            except OSError:
                closed = True
                break
        s.close()
        assert closed


def test_open_inline_passes_one_fd(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    with server_thread(tmp_path) as path, Client(path) as c:
        with c.open("f", "rb") as f:  # the daemon (in this process) has accepted us
            f.read()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            with c.open("f", "rb") as f:
                assert f.read() == b"data"
        # The daemon thread closes its copy just after sendmsg; the client may count
        # first.  A leak would leave up to 50 extra fds for good, so let it settle.
        deadline = time.monotonic() + 5
        while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(os.listdir("/proc/self/fd")) <= before

# (AsyncClient's pipelining, cancellation and a cancelled half-sent request: tests/test_async_loops.py,
# under trio, asyncio and uvloop)
