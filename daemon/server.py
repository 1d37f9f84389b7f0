"""The trio server: AF_UNIX SOCK_SEQPACKET, msgpack-RPC frames, fds back via SCM_RIGHTS.

One task per connection reads datagrams; every request runs in its own task, so replies
may go out of order.  Small operations call ``Root`` inline on the loop; long ones
(``Method.is_long``) run in a bounded pool of worker threads.
"""

from __future__ import annotations

import array
import errno
import os
import socket as _stdsocket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from ..protocol.codec import (
    FrameDecoder,
    Limits,
    ProtocolError,
    Request,
    encode_frames,
    encode_result,
    error_reply,
    pack_response,
    parse_request,
    unpack,
)
from ..protocol.codec import MAX_FRAME, MAX_MESSAGE
from ..protocol.modes import is_write_mode
from .auth import PeerCred, Policy, peer_cred

__all__ = ["ServerConfig", "Server", "serve"]

_ANC_FDS = 16
_ANC_SPACE = _stdsocket.CMSG_SPACE(_ANC_FDS * array.array("i").itemsize)


def _stderr_log(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:
        pass


@dataclass
class ServerConfig:
    policy: Policy = field(default_factory=Policy)
    max_connections: int = 128
    #: requests being served per connection; more are not read (backpressure)
    max_inflight: int = 64
    #: bytes of request payload being served per connection (write_file data)
    max_inflight_bytes: int = 256 * 1024 * 1024
    #: a connection with nothing in flight and nothing received for this long is closed
    idle_timeout: float = 600.0
    #: a reply (all its frames) must be taken by the peer within this long
    send_timeout: float = 10.0
    #: a message sent in several frames must be complete within this long
    partial_timeout: float = 30.0
    max_message: int = MAX_MESSAGE
    max_frame: int = MAX_FRAME
    worker_threads: int = 4
    #: protocol faults tolerated on one connection before it is closed
    max_faults: int = 16
    log: Callable[[str], None] = _stderr_log


class _Conn:
    def __init__(self, sock: trio.socket.SocketType, peer: PeerCred, access: str, cfg: ServerConfig) -> None:
        self.sock = sock
        self.peer = peer
        self.access = access
        self.send_lock = trio.Lock()
        self.slots = trio.Semaphore(cfg.max_inflight)
        self.inflight = 0
        self.inflight_bytes = 0
        self.bytes_changed = trio.Event()
        self.faults = 0
        self.cancel: trio.CancelScope | None = None
        self.dead = False


def _close_fds(ancdata: list[tuple[int, int, bytes]]) -> int:
    n = 0
    for level, typ, data in ancdata:
        if level == _stdsocket.SOL_SOCKET and typ == _stdsocket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            for fd in fds:
                try:
                    os.close(fd)
                    n += 1
                except OSError:
                    pass
    return n


class Server:
    """Serves one ``Root`` on one listening socket (a stdlib or trio socket)."""

    def __init__(self, root: Any, listener: Any, config: ServerConfig | None = None) -> None:
        self.root = root
        if isinstance(listener, _stdsocket.socket):
            listener.setblocking(False)
            listener = trio.socket.from_stdlib_socket(listener)
        self.listener = listener
        self.cfg = config or ServerConfig()
        self.limits = Limits.for_requests(self.cfg.max_message)
        self.limiter = trio.CapacityLimiter(self.cfg.worker_threads)
        self.connections = 0
        self.last_activity = time.monotonic()
        self.served = 0

    # -- accepting ---------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    sock, _ = await self.listener.accept()
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        self.cfg.log(f"beneathd: accept: {e.strerror}; pausing")
                        await trio.sleep(0.1)
                        continue
                    if e.errno in (errno.ECONNABORTED, errno.EINTR, errno.EPROTO):
                        continue
                    raise
                nursery.start_soon(self._connection, sock)

    async def _refuse(self, sock: trio.socket.SocketType, err: int, message: str) -> None:
        payload = pack_response(None, {"errno": err, "code": errno.errorcode.get(err, "EIO"), "message": message}, None)
        with trio.move_on_after(1.0):
            try:
                await sock.sendmsg(encode_frames(payload, self.cfg.max_frame)[:1])
                # Closing with unread requests queued would reset the connection and the
                # peer could lose the reply: say EOF, then drain briefly.
                sock.shutdown(_stdsocket.SHUT_WR)
            except OSError:
                return
        with trio.move_on_after(0.5):
            try:
                while True:
                    data, anc, flags, _ = await sock.recvmsg(self.cfg.max_frame + 1, _ANC_SPACE)
                    _close_fds(anc)
                    if not data and not anc:
                        return
            except OSError:
                pass

    async def _connection(self, sock: trio.socket.SocketType) -> None:
        with sock:
            try:
                peer = peer_cred(sock)  # type: ignore[arg-type]
            except OSError as e:
                self.cfg.log(f"beneathd: SO_PEERCRED failed: {e.strerror}")
                return
            access = self.cfg.policy.access(peer)
            if access is None:
                self.cfg.log(f"beneathd: refused peer {peer}: not allowed")
                await self._refuse(sock, errno.EACCES, f"peer uid {peer.uid} is not allowed by this daemon")
                return
            if self.connections >= self.cfg.max_connections:
                self.cfg.log(f"beneathd: refused peer {peer}: too many connections")
                await self._refuse(sock, errno.EAGAIN, "too many connections, try again later")
                return
            self.connections += 1
            self.last_activity = time.monotonic()
            conn = _Conn(sock, peer, access, self.cfg)
            try:
                async with trio.open_nursery() as nursery:
                    conn.cancel = nursery.cancel_scope
                    await self._reader(conn, nursery)
            except Exception as e:  # never let one client take the daemon down
                self.cfg.log(f"beneathd: peer {peer}: connection error: {type(e).__name__}: {e}")
            finally:
                self.connections -= 1
                self.last_activity = time.monotonic()

    # -- reading -------------------------------------------------------------------------------

    def _fault(self, conn: _Conn, what: str) -> None:
        conn.faults += 1
        self.cfg.log(f"beneathd: peer {conn.peer}: {what}")

    async def _reader(self, conn: _Conn, nursery: trio.Nursery) -> None:
        cfg = self.cfg
        decoder = FrameDecoder(self.limits)
        while not conn.dead:
            await conn.slots.acquire()
            released = False
            try:
                while conn.inflight_bytes > cfg.max_inflight_bytes:
                    conn.bytes_changed = trio.Event()
                    await conn.bytes_changed.wait()
                if decoder.pending:
                    timeout = cfg.partial_timeout
                elif conn.inflight == 0:
                    timeout = cfg.idle_timeout
                else:
                    timeout = float("inf")
                with trio.move_on_after(timeout) as cs:
                    try:
                        data, anc, flags, _ = await conn.sock.recvmsg(cfg.max_frame + 1, _ANC_SPACE)
                    except OSError as e:
                        if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                            self._fault(conn, f"recvmsg: {e.strerror}")
                        return
                if cs.cancelled_caught:
                    what = "message not completed in time" if decoder.pending else "idle"
                    self._fault(conn, f"{what}; closing")
                    return
                if anc:
                    n = _close_fds(anc)
                    if n:
                        self._fault(conn, f"sent {n} unexpected fd(s); closed them")
                if flags & _stdsocket.MSG_CTRUNC:
                    self._fault(conn, "sent more fds than accepted; dropped")
                if not data:
                    if flags & _stdsocket.MSG_CTRUNC or anc:
                        continue
                    return  # EOF
                if flags & _stdsocket.MSG_TRUNC or len(data) > cfg.max_frame:
                    self._fault(conn, "frame too large; closing")
                    await self._send_error(conn, None, ProtocolError(
                        f"frame exceeds {cfg.max_frame} bytes", err=errno.EMSGSIZE))
                    return
                try:
                    payload = decoder.feed(data)
                    if payload is None:
                        continue
                    req = parse_request(unpack(payload, self.limits))
                except ProtocolError as e:
                    self._fault(conn, f"bad request: {e.message}")
                    await self._send_error(conn, e.msgid, e)
                    if e.fatal or conn.faults >= cfg.max_faults:
                        return
                    continue
                size = len(payload)
                conn.inflight += 1
                conn.inflight_bytes += size
                released = True
                nursery.start_soon(self._request, conn, req, size)
            finally:
                if not released:
                    conn.slots.release()
        return

    async def _send_error(self, conn: _Conn, msgid: int | None, e: ProtocolError) -> None:
        await self._send(conn, pack_response(msgid, e.to_wire(), None))

    # -- serving one request -------------------------------------------------------------------

    def _call(self, req: Request) -> tuple[bytes, int | None]:
        """Run the method and pack the reply (on the loop or in a worker thread)."""
        m = req.method
        a = req.args
        fd: int | None = None
        try:
            fn = getattr(self.root, m.name)
            if m.name == "open":
                mode = a["mode"].replace("t", "")
                if "b" not in mode:
                    mode += "b"
                f = fn(a["path"], mode, buffering=0, perms=a["perms"])
                fd = os.dup(f.fileno())
                f.close()
                result = None
            else:
                kwargs = {}
                pos = []
                for p in m.wire_params:
                    if p.kwonly:
                        kwargs[p.name] = a[p.name]
                    else:
                        pos.append(a[p.name])
                result = fn(*pos, **kwargs)
            payload = pack_response(req.msgid, None, encode_result(m, result))
            if len(payload) > self.cfg.max_message:
                raise OSError(errno.EFBIG, f"result of {len(payload)} bytes exceeds the message limit "
                                           f"({self.cfg.max_message}); use open() for big files")
            return payload, fd
        except Exception as e:
            if fd is not None:
                os.close(fd)
            if not isinstance(e, (OSError, ValueError, TypeError)):
                self.cfg.log(f"beneathd: {m.name}: internal error: {type(e).__name__}: {e}")
            return pack_response(req.msgid, error_reply(e, m, a), None), None

    def _permitted(self, conn: _Conn, req: Request) -> bool:
        if conn.access == "rw":
            return True
        m = req.method
        if m.mutates:
            return False
        if m.name == "open" and is_write_mode(req.args["mode"]):
            return False
        return True

    async def _request(self, conn: _Conn, req: Request, size: int) -> None:
        fd: int | None = None
        try:
            self.served += 1
            if not self._permitted(conn, req):
                self._fault(conn, f"read-only peer called {req.method.name}")
                err = {"errno": errno.EACCES, "code": "EACCES",
                       "message": f"read-only peer may not call {req.method.name}"
                                  + (" for writing" if req.method.name == "open" else ""),
                       "paths": []}
                payload = pack_response(req.msgid, err, None)
            elif req.method.is_long(req.args):
                payload, fd = await trio.to_thread.run_sync(self._call, req, limiter=self.limiter)
            else:
                payload, fd = self._call(req)
            conn.inflight_bytes -= size
            size = 0
            conn.bytes_changed.set()
            await self._send(conn, payload, fd)
        finally:
            if fd is not None:
                os.close(fd)
            conn.inflight -= 1
            conn.inflight_bytes -= size
            conn.bytes_changed.set()
            conn.slots.release()
            self.last_activity = time.monotonic()

    async def _send(self, conn: _Conn, payload: bytes, fd: int | None = None) -> None:
        if conn.dead:
            return
        frames = encode_frames(payload, self.cfg.max_frame)
        anc = [(_stdsocket.SOL_SOCKET, _stdsocket.SCM_RIGHTS, array.array("i", [fd]).tobytes())] if fd is not None else []
        async with conn.send_lock:
            with trio.move_on_after(self.cfg.send_timeout) as cs:
                try:
                    for i, frame in enumerate(frames):
                        await conn.sock.sendmsg([frame], anc if i == 0 else [])
                except OSError as e:
                    if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                        self._fault(conn, f"sendmsg: {e.strerror}")
                    self._kill(conn)
                    return
            if cs.cancelled_caught:
                self._fault(conn, "does not read its replies; dropped")
                self._kill(conn)

    def _kill(self, conn: _Conn) -> None:
        conn.dead = True
        if conn.cancel is not None:
            conn.cancel.cancel()


async def serve(root: Any, listener: Any, config: ServerConfig | None = None,
                *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``root`` on ``listener`` until cancelled."""
    await Server(root, listener, config).serve(task_status=task_status)
