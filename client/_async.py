"""``AsyncClient``: the ``Root`` API over the socket for trio (every method is awaited).

Any number of tasks may call at once (pipelined); whichever waiting task finds nobody
reading reads replies for everyone and hands them out by msgid.
"""

from __future__ import annotations

import itertools
import os
import socket as _stdsocket
from typing import Any

import trio

from ..protocol.codec import (
    MAX_FRAME,
    MAX_MESSAGE,
    FrameDecoder,
    Limits,
    ProtocolError,
    encode_frames,
    exception_from_reply,
    pack_request,
    parse_response,
    unpack,
)
from ..protocol.methods import METHODS, Method
from ._common import finish, install_methods, prepare, retryable, wrap_fd
from ._sync import _ANC_SPACE, _Broken, _close_all, _fds_of

__all__ = ["AsyncClient"]


class AsyncClient:
    """``async with AsyncClient(path) as fs: await fs.stat("x")``; connects in ``__aenter__``."""

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._limits = Limits.for_responses(max_message)
        self._ids = itertools.count(1)
        self._results: dict[int, tuple[Any, Any, list[int]]] = {}
        self._pending: set[int] = set()
        self._reading = False
        self._wake = trio.Event()
        self._send_lock = trio.Lock()
        self._connect_lock = trio.Lock()
        self._sock: Any = None
        self._decoder = FrameDecoder(self._limits)
        self._gen = 0
        self._broken: BaseException | None = None
        self._closed = False

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
            self._sock = s
            self._decoder = FrameDecoder(self._limits)
            self._gen += 1
            self._broken = None

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(_stdsocket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

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
        if self._closed:
            raise ValueError("I/O operation on closed client")
        if self._sock is None or self._broken is not None:
            try:
                await self.connect()
            except OSError as e:
                raise ConnectionError(f"cannot reconnect to beneathd at {self._path!r}: {e}") from e
        sock, gen = self._sock, self._gen
        msgid = next(self._ids) & 0xFFFFFFFF
        frames = encode_frames(pack_request(msgid, name, wire), MAX_FRAME)
        self._pending.add(msgid)
        try:
            async with self._send_lock:
                for fr in frames:
                    await sock.sendmsg([fr])
        except OSError as e:
            self._pending.discard(msgid)
            if self._gen == gen:
                self._break(e)
            raise _Broken(f"connection to beneathd at {self._path!r} broken: {e}") from e
        except BaseException:
            self._pending.discard(msgid)
            raise
        return msgid, gen

    async def _recv_one(self, sock: Any) -> tuple[Any, Any, Any, list[int]]:
        fds: list[int] = []
        try:
            while True:
                data, anc, flags, _ = await sock.recvmsg(MAX_FRAME + 1, _ANC_SPACE)
                if anc:
                    fds.extend(_fds_of(anc))
                if not data:
                    raise ConnectionError("beneathd closed the connection")
                if flags & _stdsocket.MSG_TRUNC:
                    raise ConnectionError("oversized frame from beneathd")
                payload = self._decoder.feed(data)
                if payload is not None:
                    r = parse_response(unpack(payload, self._limits))
                    return r.msgid, r.error, r.result, fds
        except ProtocolError as e:
            _close_all(fds)
            raise ConnectionError(f"protocol error from beneathd: {e.message}") from None
        except BaseException:
            _close_all(fds)
            raise

    async def _wait(self, msgid: int, gen: int) -> tuple[Any, Any, list[int]]:
        try:
            while True:
                if msgid in self._results:
                    return self._results.pop(msgid)
                if self._gen != gen or self._broken is not None:
                    b = self._broken
                    if getattr(b, "_beneathd", False):
                        raise b  # type: ignore[misc]
                    raise _Broken(f"connection to beneathd at {self._path!r} broken: {b}")
                if self._reading:
                    await self._wake.wait()
                    continue
                self._reading = True
                sock = self._sock
                try:
                    msg = await self._recv_one(sock)
                except (OSError, ValueError) as e:
                    if self._gen == gen:
                        self._break(e if isinstance(e, OSError) else ConnectionError(str(e)))
                    continue
                finally:
                    self._reading = False
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
                if rid in self._pending:
                    self._results[rid] = (err, res, fds)
                else:
                    _close_all(fds)
        finally:
            self._pending.discard(msgid)
            late = self._results.pop(msgid, None)
            if late is not None:  # cancelled after the reply came
                _close_all(late[2])

    def _finish(self, m: Method, values: dict[str, Any], err: Any, res: Any, fds: list[int]) -> Any:
        if m.returns_fd and err is None:
            if len(fds) != 1:
                _close_all(fds)
                raise OSError(71, "the daemon sent no fd with an open() reply")
            return wrap_fd(values, fds[0])
        _close_all(fds)
        return finish(m, values, err, res)

    async def _call(self, m: Method, values: dict[str, Any], wire: list[Any]) -> Any:
        for attempt in (0, 1):
            try:
                msgid, gen = await self._send(m.name, wire)
                err, res, fds = await self._wait(msgid, gen)
            except _Broken:
                if attempt == 0 and retryable(m, values):
                    continue
                raise
            return self._finish(m, values, err, res, fds)
        raise AssertionError("unreachable")  # pragma: no cover


def _make(m: Method, sig: Any) -> Any:
    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        values, wire = prepare(m, sig, args, kwargs)
        return await self._call(m, values, wire)

    return method


install_methods(AsyncClient, _make)
