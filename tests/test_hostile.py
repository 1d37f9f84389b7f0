"""Hostile peers: the daemon stays up, leaks no fd, and a well-behaved client keeps working."""

from __future__ import annotations

import array
import os
import socket
import time
from typing import Iterator

import msgpack
import pytest

from beneathd.client import Client
from beneathd.protocol.codec import MAX_FRAME
from test_daemon import Daemon, chown_tree, start_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests start the daemon as root")

MAX_CONN = 8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("hostile")
    with start_daemon(tmp, "--max-connections", str(MAX_CONN), "--send-timeout", "1",
                      "--max-inflight", "8") as d:
        (d.root / "file").write_bytes(b"x" * 150_000)
        chown_tree(d.root)
        yield d


@pytest.fixture
def good(daemon: Daemon) -> Iterator[Client]:
    with Client(daemon.sock) as c:
        assert c.read_file("file") == b"x" * 150_000
        yield c


def raw(daemon: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(daemon.sock)
    return s


def reply(s: socket.socket) -> list:
    data = s.recv(MAX_FRAME + 1)
    assert data, "connection closed without a reply"
    return msgpack.unpackb(data[1:], raw=False)


def check_healthy(daemon: Daemon, good: Client, before: int) -> None:
    assert daemon.alive()
    assert good.stat("file").st_size == 150_000
    with Client(daemon.sock) as c:
        assert c.exists("file")
    assert daemon.fds() <= before
    assert "Traceback" not in daemon.stderr()


@pytest.mark.parametrize(
    "frame",
    [
        b"garbage" * 10,
        b"\x00" + b"\xc1",                              # never-used msgpack byte
        b"\x00" + b"\xdd\xff\xff\xff\xff",              # array claiming 4G items
        b"\x00" + b"\xc6\x7f\xff\xff\xff" + b"ab",      # bin claiming 2 GiB
        b"\x00" + b"\x91" * 50_000 + b"\xc0",           # deep nesting
        b"\x00" + msgpack.packb([0, 1, "stat", {"path": [[[[[[b"x"]]]]]]}]),
        b"\x00" + msgpack.packb(msgpack.ExtType(1, b"zz")),
        b"\x00" + msgpack.packb({"not": "a request"}),
        b"\x00" + msgpack.packb([0, 1, 2, 3, 4]),
    ],
)
def test_garbage_gets_an_error(daemon: Daemon, good: Client, frame: bytes) -> None:
    before = daemon.fds()
    with raw(daemon) as s:
        s.send(frame)
        try:
            r = reply(s)
        except (ConnectionError, AssertionError):
            r = None  # closing is also a fine answer to a broken frame header
        if r is not None:
            assert r[0] == 1 and isinstance(r[2], dict) and r[2]["errno"] > 0
    check_healthy(daemon, good, before)


@pytest.mark.parametrize(
    "msg, code",
    [
        ([0, 5, "no_such_method", []], "ENOSYS"),
        ([0, 5, "stat", [12]], "EINVAL"),
        ([0, 5, "chmod", [b"file", "0o777"]], "EINVAL"),
        ([0, 5, "open", [b"file", "rwx"]], "EINVAL"),
        ([0, 5, "stat", [b"file", True, False, True]], "EINVAL"),
        ([0, 5, "stat", []], "EINVAL"),
        ([0, 5, "stat", [b"/etc/passwd"]], "EESCAPE"),
    ],
)
def test_bad_requests_get_clear_errors(daemon: Daemon, good: Client, msg: list, code: str) -> None:
    with raw(daemon) as s:
        s.send(b"\x00" + msgpack.packb(msg))
        r = reply(s)
        assert r[1] == 5 and r[2]["code"] == code, r
        # the connection is still usable after a bad request
        s.send(b"\x00" + msgpack.packb([0, 6, "exists", [b"file"]]))
        assert reply(s)[1:] == [6, None, True]


def test_oversized_frame_closes(daemon: Daemon, good: Client) -> None:
    before = daemon.fds()
    with raw(daemon) as s:
        s.send(b"\x00" + b"\x00" * (MAX_FRAME + 100))
        r = reply(s)
        assert r[2]["code"] == "EMSGSIZE"
        assert s.recv(100) == b""
    check_healthy(daemon, good, before)


def test_unexpected_fds(daemon: Daemon, good: Client) -> None:
    before = daemon.fds()
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    try:
        for n in (1, 3, 40):  # 40 > what the daemon accepts: the kernel drops the rest
            with raw(daemon) as s:
                payload = array.array("i", (fds * 20)[:n]).tobytes()
                s.sendmsg([b"\x00" + msgpack.packb([0, 1, "exists", [b"file"]])],
                          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, payload)])
                assert reply(s)[1:] == [1, None, True]
                s.sendmsg([b""], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, payload)])  # fds alone
                s.send(b"\x00" + msgpack.packb([0, 2, "exists", [b"file"]]))
                assert reply(s)[1:] == [2, None, True]
    finally:
        for fd in fds:
            os.close(fd)
    check_healthy(daemon, good, before)


def test_abandoned_connections(daemon: Daemon, good: Client) -> None:
    before = daemon.fds()
    for _ in range(3):
        socks = [raw(daemon) for _ in range(MAX_CONN - 2)]
        for i, s in enumerate(socks):
            if i % 3 == 0:
                s.send(b"\x01" + b"\x94\x00")  # first half of a chunked message
            elif i % 3 == 1:
                s.send(b"\x00" + msgpack.packb([0, 1, "read_file", [b"file"]]))  # never read
        for s in socks:
            s.close()
    check_healthy(daemon, good, before)


def test_connection_flood(daemon: Daemon, good: Client) -> None:
    before = daemon.fds()
    socks = []
    refused = 0
    for _ in range(MAX_CONN * 3):
        s = raw(daemon)
        socks.append(s)
        s.send(b"\x00" + msgpack.packb([0, 1, "exists", [b"file"]]))
    for s in socks:
        r = reply(s)
        if r[1] is None:
            refused += 1
            assert r[2]["code"] == "EAGAIN"
        else:
            assert r[3] is True
    assert refused >= MAX_CONN  # `good` holds one slot
    for s in socks:
        s.close()
    time.sleep(0.2)
    check_healthy(daemon, good, before)


def test_peer_not_reading_is_dropped(daemon: Daemon, good: Client) -> None:
    before = daemon.fds()
    s = raw(daemon)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = b"\x00" + msgpack.packb([0, 1, "read_file", [b"file"]])
    s.settimeout(0.2)
    sent = 0
    try:
        for _ in range(200):
            s.send(req)
            sent += 1
    except (TimeoutError, socket.timeout, BlockingIOError, OSError):
        pass
    # the daemon gives up within its send timeout (1 s) and closes the connection
    deadline = time.monotonic() + 10
    closed = False
    s.settimeout(5)
    while time.monotonic() < deadline:
        try:
            if s.recv(MAX_FRAME + 1) == b"":
                closed = True
                break
        except (ConnectionError, OSError):
            closed = True
            break
    s.close()
    assert closed and sent > 0
    check_healthy(daemon, good, before)
