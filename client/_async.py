"""``AsyncClient``: the ``Root`` API over the socket for trio (every method is awaited).

Any number of tasks may call at once (pipelined); whichever waiting task finds nobody
reading reads replies for everyone and hands them out by msgid.
"""

from __future__ import annotations

import itertools
import os
import socket as _stdsocket
from typing import Any

import msgpack
import trio

from ..protocol.codec import (
    MAX_FRAME,
    MAX_MESSAGE,
    FrameDecoder,
    Limits,
    MessageUnpacker,
    ProtocolError,
    encode_frames,
    exception_from_reply,
)
from ._common import Spec
from ._generated import AsyncMethods
from ._sync import _ANC_SPACE, _CLOEXEC, _FINAL, _Broken, _close_all, _finish, _take_frame

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

    The socket is a stdlib socket in non-blocking mode: ``sendmsg``/``recvmsg`` are tried
    at once and trio is only asked to wait (``wait_readable``/``wait_writable``) when they
    would block.  Every call is a trio checkpoint.
    """

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._limits = Limits.for_responses(max_message)
        self._ids = itertools.count(1)
        self._results: dict[int, tuple[Any, Any, list[int]]] = {}
        self._pending: set[int] = set()
        self._reading = False
        self._nwait = 0  # tasks waiting on _wake
        self._wake = trio.Event()
        self._send_lock = trio.Lock()
        self._connect_lock = trio.Lock()
        self._sock: _stdsocket.socket | None = None
        self._decoder = FrameDecoder(self._limits)
        self._unpack = MessageUnpacker(self._limits)
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self._gen = 0
        self._broken: BaseException | None = None
        self._closed = False
        self._yielded = False  # set by _recv_one when it had to wait

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
            self._decoder = FrameDecoder(self._limits)
            self._unpack = MessageUnpacker(self._limits)
            self._gen += 1
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
        for _, _, fds in self._results.values():
            _close_all(fds)
        self._results.clear()

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

    async def _send(self, name: str, wire: list[Any]) -> tuple[int, int]:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise ValueError("I/O operation on closed client")
        if self._sock is None or self._broken is not None:
            try:
                await self.connect()
            except OSError as e:
                raise ConnectionError(f"cannot reconnect to beneathd at {self._path!r}: {e}") from e
        sock, gen = self._sock, self._gen
        assert sock is not None
        msgid = next(self._ids) & 0xFFFFFFFF
        payload = self._packb([0, msgid, name, wire])
        self._pending.add(msgid)
        try:
            lock = self._send_lock
            if len(payload) < MAX_FRAME and not lock.locked():
                # one frame, nobody half-way through a message: no await between the
                # check and the send, so nothing can interleave
                try:
                    sock.sendmsg([_FINAL, payload])
                    return msgid, gen
                except BlockingIOError:
                    pass
            async with lock:
                for fr in encode_frames(payload, MAX_FRAME):
                    while True:
                        try:
                            sock.sendmsg([fr])
                            break
                        except BlockingIOError:
                            await _wait_writable(sock)
        except (OSError, trio.ClosedResourceError) as e:
            self._pending.discard(msgid)
            if self._gen == gen:
                self._break(e if isinstance(e, OSError) else ConnectionError(str(e)))
            raise _Broken(f"connection to beneathd at {self._path!r} broken: {e}") from e
        except BaseException:
            self._pending.discard(msgid)
            raise
        return msgid, gen

    async def _recv_one(self, sock: _stdsocket.socket) -> tuple[Any, Any, Any, list[int]]:
        fds: list[int] = []
        feed = self._decoder.feed
        try:
            while True:
                try:
                    data, anc, flags, _ = sock.recvmsg(MAX_FRAME + 1, _ANC_SPACE, _CLOEXEC)
                except BlockingIOError:
                    self._yielded = True
                    await _wait_readable(sock)
                    continue
                reply = _take_frame(data, anc, flags, fds, feed, self._unpack)
                if reply is not None:
                    return reply[0], reply[1], reply[2], fds
        except ProtocolError as e:
            _close_all(fds)
            raise ConnectionError(f"protocol error from beneathd: {e.message}") from None
        except trio.ClosedResourceError:
            _close_all(fds)
            raise ConnectionError("connection to beneathd closed") from None
        except BaseException:
            _close_all(fds)
            raise

    async def _wait(self, msgid: int, gen: int) -> tuple[Any, Any, list[int]]:
        """Wait for the reply to ``msgid``; whichever waiter finds nobody reading reads.

        A checkpoint, as every trio call: when the reply was there without waiting, it
        still lets other tasks run (and honours a cancellation) before returning."""
        yielded = False
        try:
            while True:
                if msgid in self._results:
                    out = self._results.pop(msgid)
                    if not yielded:
                        try:
                            await trio.lowlevel.checkpoint()
                        except BaseException:
                            _close_all(out[2])
                            raise
                    return out
                if self._gen != gen or self._broken is not None:
                    b = self._broken
                    if getattr(b, "_beneathd", False):
                        raise b  # type: ignore[misc]
                    raise _Broken(f"connection to beneathd at {self._path!r} broken: {b}")
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
                    msg = await self._recv_one(sock)
                    yielded = yielded or self._yielded
                except (OSError, ValueError) as e:
                    if self._gen == gen:
                        self._break(e if isinstance(e, OSError) else ConnectionError(str(e)))
                    continue
                finally:
                    self._reading = False
                    if self._nwait:
                        self._wakeup()
                if self._gen != gen:
                    _close_all(msg[3])
                    continue
                rid, err, res, fds = msg
                if rid is None:
                    _close_all(fds)
                    e2 = exception_from_reply(err)
                    e2._beneathd = True  # type: ignore[attr-defined]
                    self._break(e2)
                    continue
                if rid == msgid:
                    if not yielded:
                        try:
                            await trio.lowlevel.checkpoint()
                        except BaseException:
                            _close_all(fds)
                            raise
                    return err, res, fds
                if rid in self._pending:
                    self._results[rid] = (err, res, fds)
                else:
                    _close_all(fds)
        finally:
            self._pending.discard(msgid)
            late = self._results.pop(msgid, None)
            if late is not None:  # cancelled after the reply came
                _close_all(late[2])

    async def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any]) -> Any:
        try:
            msgid, gen = await self._send(spec.name, wire)
            err, res, fds = await self._wait(msgid, gen)
        except _Broken:
            if not spec.retryable(vals):
                raise
            msgid, gen = await self._send(spec.name, wire)
            err, res, fds = await self._wait(msgid, gen)
        if fds or spec.returns_fd:
            return _finish(spec, vals, err, res, fds)
        return spec.result(err, res, vals)
