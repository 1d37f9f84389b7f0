"""The sans-I/O connection objects, driven with bytes alone (the two ends against each other).

What the daemon and both clients rely on: msgids, frames, reassembly, filing of replies
and intermediate messages by msgid, the fd rules, the read-only rule and the limits. The
same objects run under the real socket suites (test_behaviour, test_daemon, test_hostile).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from typing import Any

import msgpack
import pytest

from beneathd.protocol.codec import MAX_FRAME, Limits, Request
from beneathd.protocol.connection import (
    CLOSED,
    ClientConnection,
    Partial,
    Reject,
    Reply,
    ServerConnection,
    fd_ancillary,
    fds_of,
)


def _deliver(datagrams: list[tuple[bytes, ...]], end: Any, anc: Any = ()) -> Any:
    """Feed each datagram (the tuple of buffers of one sendmsg, joined as the kernel does)."""
    out = None
    for i, bufs in enumerate(datagrams):
        ev = end.receive(b"".join(bufs), anc if i == 0 else ())
        if i < len(datagrams) - 1:
            assert ev is None, "a message was complete before its last frame"
        out = ev
    return out


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError as e:
        assert e.errno == errno.EBADF
        return False


def test_round_trip_one_frame() -> None:
    client, server = ClientConnection(), ServerConnection()
    msgid, dgs = client.request("stat", [b"a/b", True])
    assert len(dgs) == 1 and dgs[0][0] == b"\x00"
    req = _deliver(dgs, server)
    assert isinstance(req, Request)
    assert (req.msgid, req.method.name, req.args) == (msgid, "stat", {"path": b"a/b", "follow_symlinks": True})
    st = os.stat(".")
    ev = _deliver(server.datagrams(server.reply(req, st)), client)
    assert isinstance(ev, Reply) and ev.msgid == msgid and ev.error is None
    assert client.deliver(ev) is None
    assert client.take(msgid) is ev and not client.waiting(msgid)
    assert client.take(msgid) is None


def test_big_request_and_reply_are_chunked() -> None:
    client, server = ClientConnection(), ServerConnection()
    data = os.urandom(3 * MAX_FRAME + 5)
    msgid, dgs = client.request("write_file", [b"f", data, 0o600])
    assert len(dgs) == 4 and all(sum(map(len, d)) <= MAX_FRAME for d in dgs)
    req = _deliver(dgs, server)
    assert isinstance(req, Request) and req.args["data"] == data and req.size > len(data)
    rid, dgs = client.request("read_file", [b"f"])
    dgs_out = server.datagrams(server.reply(_deliver(dgs, server), data))
    assert len(dgs_out) == 4
    ev = _deliver(dgs_out, client)
    assert isinstance(ev, Reply) and ev.msgid == rid and ev.result == data


def test_pipelined_replies_filed_by_msgid_out_of_order() -> None:
    client, server = ClientConnection(), ServerConnection()
    reqs = []
    for name in ("a", "b", "c"):
        _, dgs = client.request("exists", [name.encode()])
        reqs.append(_deliver(dgs, server))
    for req in reversed(reqs):
        client.deliver(_deliver(server.datagrams(server.reply(req, req.args["path"] == b"b")), client))
    assert [client.take(r.msgid).result for r in reqs] == [False, True, False]  # type: ignore[union-attr]


def test_intermediate_messages_come_before_the_final_reply() -> None:
    client, server = ClientConnection(), ServerConnection()
    msgid, dgs = client.request("listdir", [b"."])
    req = _deliver(dgs, server)
    for i in range(3):
        client.deliver(_deliver(server.datagrams(server.partial(msgid, "page", [i])), client))
    client.deliver(_deliver(server.datagrams(server.reply(req, ["x"])), client))
    got = [client.take(msgid) for _ in range(5)]
    assert [type(e).__name__ for e in got] == ["Partial", "Partial", "Partial", "Reply", "NoneType"]
    assert [e.data for e in got[:3]] == [[0], [1], [2]]  # type: ignore[union-attr]
    assert isinstance(got[0], Partial) and got[0].kind == "page"


@pytest.mark.parametrize("how", ["forgotten before it came", "not taken before close"])
def test_fds_of_a_reply_nobody_takes_are_closed(how: str) -> None:
    client, server = ClientConnection(), ServerConnection()
    msgid, dgs = client.request("open", [b"f", "r", 0o666])
    req = _deliver(dgs, server)
    r, w = os.pipe()
    os.close(w)
    if how.startswith("forgotten"):
        client.forget(msgid)  # the caller was cancelled
    ev = _deliver(server.datagrams(server.reply(req, None)), client, fd_ancillary(r))
    assert isinstance(ev, Reply) and list(ev.fds) == [r]
    client.deliver(ev)
    if how.startswith("not taken"):
        assert _is_open(r)
        client.close()
    assert not _is_open(r) and client.take(msgid) is None


def test_connection_level_error_is_returned_for_every_caller() -> None:
    client = ClientConnection()
    wire = msgpack.packb([1, None, {"errno": errno.EACCES, "code": "EACCES", "message": "no"}, None])
    ev = client.receive(b"\x00" + wire)
    assert isinstance(ev, Reply) and ev.msgid is None
    exc = client.deliver(ev)
    assert isinstance(exc, PermissionError) and client.error is exc


@pytest.mark.parametrize("datagram, flags, what", [
    (b"", 0, "closed the connection"),
    (b"\x00" + msgpack.packb([1, 1, None, None]), 0x20, "oversized frame"),  # MSG_TRUNC
    (b"\x07abc", 0, "bad frame header"),
    (b"\x00\xc1", 0, "undecodable"),
    (b"\x00" + msgpack.packb([0, 1, "stat", []]), 0, "a response is"),
])
def test_client_refuses_a_bad_daemon(datagram: bytes, flags: int, what: str) -> None:
    client = ClientConnection()
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ConnectionError, match=what):
        client.receive(datagram, fd_ancillary(r), flags)
    assert not _is_open(r)


def test_server_closes_fds_a_peer_sends() -> None:
    server = ServerConnection()
    r, w = os.pipe()
    assert server.receive(b"", fd_ancillary(r) + fd_ancillary(w)) is None  # fds only: not EOF
    assert not _is_open(r) and not _is_open(w)
    assert server.notes == ["sent 2 unexpected fd(s); closed them"] and server.faults == 1
    assert server.receive(b"") is CLOSED


def test_server_rejections() -> None:
    server = ServerConnection(max_faults=3)
    ev = server.receive(b"\x00" + msgpack.packb([0, 7, "nosuch", []]))
    assert isinstance(ev, Reject) and not ev.fatal
    assert msgpack.unpackb(ev.reply[1:] if ev.reply[:1] == b"\x00" else ev.reply)[1:3] == [
        7, {"errno": errno.ENOSYS, "code": "ENOSYS", "message": "unknown method 'nosuch'"}]
    ev = server.receive(b"\x00" + msgpack.packb([0, 8, "stat", [1]]))
    assert isinstance(ev, Reject) and not ev.fatal
    ev = server.receive(b"\x00\xc1")  # third fault: the limit
    assert isinstance(ev, Reject) and ev.fatal
    ev = ServerConnection().receive(b"\x05x")
    assert isinstance(ev, Reject) and ev.fatal
    ev = ServerConnection().receive(b"\x00" + msgpack.packb([0, 1, "exists", [b"a"]]), (), 0x20)
    assert isinstance(ev, Reject) and ev.fatal
    assert msgpack.unpackb(ev.reply)[2]["errno"] == errno.EMSGSIZE


@pytest.mark.parametrize("method, params, allowed", [
    ("stat", [b"a"], True),
    ("open", [b"a", "rb", 0o666], True),
    ("open", [b"a", "r+", 0o666], False),
    ("open", [b"a", "ab", 0o666], False),
    ("write_file", [b"a", b"x"], False),
    ("rm", [b"a"], False),
])
def test_read_only_rule(method: str, params: list[Any], allowed: bool) -> None:
    client, server = ClientConnection(), ServerConnection("ro")
    _, dgs = client.request(method, params)
    ev = _deliver(dgs, server)
    if allowed:
        assert isinstance(ev, Request)
    else:
        assert isinstance(ev, Reject) and not ev.fatal
        err = msgpack.unpackb(ev.reply)[2]
        assert err["errno"] == errno.EACCES and method in err["message"]


def test_reply_over_the_message_limit_is_an_error_naming_it() -> None:
    client, server = ClientConnection(), ServerConnection(limits=Limits.for_requests(max_message=1000))
    msgid, dgs = client.request("read_file", [b"f"])
    req = _deliver(dgs, server)
    ev = _deliver(server.datagrams(server.reply(req, b"x" * 2000)), client)
    assert ev.result is None and ev.error["errno"] == errno.EFBIG and "(1000)" in ev.error["message"]


def test_worker_thread_encoding_is_the_same() -> None:
    client, server = ClientConnection(), ServerConnection()
    _, dgs = client.request("listdir", [b"."])
    req = _deliver(dgs, server)
    assert server.reply(req, ["a", "b"], threadsafe=True) == server.reply(req, ["a", "b"])
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", b".")
    assert server.error(req, exc, threadsafe=True) == server.error(req, exc)


def test_fds_of_ignores_other_control_messages() -> None:
    r, w = os.pipe()
    try:
        assert fds_of([(1, 2, b"\x01\x00\x00\x00")] + fd_ancillary(r) + fd_ancillary(w)) == [r, w]
    finally:
        os.close(r)
        os.close(w)


def test_connection_module_imports_no_trio_and_no_sockets_io() -> None:
    code = ("import sys; import beneathd.protocol.connection; "
            "assert 'trio' not in sys.modules, 'trio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
