"""``AsyncClient``: the ``Root`` API over the socket for trio (every method is awaited).

Any number of tasks may call at once (pipelined); whichever waiting task finds nobody
reading reads replies for everyone and hands them out by msgid.
"""

from __future__ import annotations

import os
import socket as _stdsocket
from typing import Any

import trio

from ..protocol.codec import MAX_MESSAGE, Limits
from ..protocol.connection import ClientConnection, Reply, close_fds
from ._common import Broken, Spec, finish, lost
from ._generated import AsyncMethods
from ._sync import _ANC_SPACE, _BUFSIZE, _CLOEXEC

__all__ = ["AsyncClient"]

_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable


def _notify_closing(sock: _stdsocket.socket) -> None:
    try:
        trio.lowlevel.notify_closing(sock)
    except RuntimeError:  # not inside trio (the synchronous close())
        pass


class AsyncClient(AsyncMethods):
    """``async with AsyncClient(path) as fs: await fs.stat("x")``; connects in ``__aenter__``.

    A thin I/O shell around :class:`~beneathd.protocol.connection.ClientConnection`.  The
    socket is a stdlib socket in non-blocking mode: ``sendmsg``/``recvmsg`` are tried at
    once and trio is only asked to wait (``wait_readable``/``wait_writable``) when they
    would block.  Every call is a trio checkpoint.
    """

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._limits = Limits.for_responses(max_message)
        self._reading = False
        self._nwait = 0  # tasks waiting on _wake
        self._wake = trio.Event()
        #: one sender at a time for requests of several frames (they must not interleave)
        self._send_lock = trio.Lock()
        self._connect_lock = trio.Lock()
        self._sock: _stdsocket.socket | None = None
        self._conn = ClientConnection(self._limits)
        self._broken: BaseException | None = None
        self._closed = False
        self._yielded = False  # set by _read_message when it had to wait

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._sock is not None and self._broken is None:
                return
            self._drop()
            s = trio.socket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_SEQPACKET)
            try:
                await s.connect(self._path)
            except BaseException:
                s.close()
                raise
            raw = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_SEQPACKET, 0, s.detach())
            raw.setblocking(False)
            self._sock = raw
            self._conn = ClientConnection(self._limits)
            self._broken = None

    def _drop(self) -> None:
        if self._sock is not None:
            sock = self._sock
            self._sock = None
            try:
                sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            _notify_closing(sock)  # a task waiting on it gets ClosedResourceError
            sock.close()

    def _break(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
        self._drop()
        self._wakeup()

    def _wakeup(self) -> None:
        ev = self._wake
        self._wake = trio.Event()
        ev.set()

    async def aclose(self) -> None:
        self._closed = True
        self._break(ConnectionError("client closed"))
        self._conn.close()

    def close(self) -> None:
        """Synchronous close (also usable outside trio)."""
        self._closed = True
        if self._broken is None:
            self._broken = ConnectionError("client closed")
        self._drop()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<beneathd.AsyncClient {self._path!r}>"

    # -- requests ----------------------------------------------------------------------------

    async def _send(self, name: str, wire: list[Any]) -> tuple[ClientConnection, int]:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise ValueError("I/O operation on closed client")
        if self._sock is None or self._broken is not None:
            try:
                await self.connect()
            except OSError as e:
                raise ConnectionError(f"cannot reconnect to beneathd at {self._path!r}: {e}") from e
        sock, conn = self._sock, self._conn
        assert sock is not None
        msgid, datagrams = conn.request(name, wire)
        lock = self._send_lock
        if len(datagrams) == 1 and not lock.locked():
            # one frame, nobody half-way through a message: no await between the check and
            # the send, so nothing can interleave
            try:
                sock.sendmsg(datagrams[0])
                return conn, msgid
            except BlockingIOError:
                pass
            except OSError as e:
                return self._send_failed(conn, msgid, e)
        sent = 0
        try:
            async with lock:
                for bufs in datagrams:
                    while True:
                        try:
                            sock.sendmsg(bufs)
                            break
                        except BlockingIOError:
                            await _wait_writable(sock)
                    sent += 1
        except (OSError, trio.ClosedResourceError) as e:
            return self._send_failed(conn, msgid, e)
        except BaseException:
            conn.forget(msgid)
            if sent and self._conn is conn:
                # cancelled half-way through a request of several frames: the next message
                # would run into its frames, so this connection is done
                self._break(ConnectionError("a request was cancelled half-sent"))
            raise
        return conn, msgid

    def _send_failed(self, conn: ClientConnection, msgid: int, e: BaseException) -> Any:
        conn.forget(msgid)
        if self._conn is conn:
            self._break(e if isinstance(e, OSError) else ConnectionError(str(e)))
        raise Broken(f"connection to beneathd at {self._path!r} broken: {e}") from e

    async def _read_message(self, sock: _stdsocket.socket, conn: ClientConnection) -> Any:
        receive = conn.receive
        try:
            while True:
                try:
                    data, anc, flags, _ = sock.recvmsg(_BUFSIZE, _ANC_SPACE, _CLOEXEC)
                except BlockingIOError:
                    self._yielded = True
                    await _wait_readable(sock)
                    continue
                event = receive(data, anc, flags)
                if event is not None:
                    return event
        except trio.ClosedResourceError:
            raise ConnectionError("connection to beneathd closed") from None

    async def _wait(self, conn: ClientConnection, msgid: int) -> Reply:
        """Wait for the reply to ``msgid``; whichever waiter finds nobody reading reads.

        A checkpoint, as every trio call: when the reply was there without waiting, it
        still lets other tasks run (and honours a cancellation) before returning."""
        yielded = False
        try:
            while True:
                ev = conn.take(msgid)
                if ev is None:
                    if self._conn is not conn or self._broken is not None:
                        raise lost(self._broken if self._conn is conn else conn.error, conn, self._path)
                    if self._reading:
                        self._nwait += 1
                        yielded = True
                        try:
                            await self._wake.wait()
                        finally:
                            self._nwait -= 1
                        continue
                    self._reading = True
                    sock = self._sock
                    try:
                        assert sock is not None
                        self._yielded = False
                        ev = await self._read_message(sock, conn)
                        yielded = yielded or self._yielded
                    except (OSError, ValueError) as e:
                        if self._conn is conn:
                            self._break(e if isinstance(e, OSError) else ConnectionError(str(e)))
                        continue
                    finally:
                        self._reading = False
                        if self._nwait:
                            self._wakeup()
                    if ev.msgid != msgid or ev.__class__ is not Reply:
                        failed = conn.deliver(ev)  # another caller's, or about the connection
                        if failed is not None and self._conn is conn:
                            self._break(failed)
                        continue
                if ev.__class__ is Reply:
                    break
                close_fds(ev.fds)  # intermediate messages: no call asks for them yet
            if not yielded:
                try:
                    await trio.lowlevel.checkpoint()
                except BaseException:
                    close_fds(ev.fds)
                    raise
            return ev  # type: ignore[return-value]
        finally:
            conn.forget(msgid)  # cancelled: a reply that comes (or came) later is dropped

    async def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any]) -> Any:
        try:
            conn, msgid = await self._send(spec.name, wire)
            reply = await self._wait(conn, msgid)
        except Broken:
            if not spec.retryable(vals):
                raise
            conn, msgid = await self._send(spec.name, wire)
            reply = await self._wait(conn, msgid)
        if reply.fds or spec.returns_fd:
            return finish(spec, vals, reply)
        return spec.result(reply.error, reply.result, vals)
