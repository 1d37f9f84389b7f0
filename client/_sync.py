"""The blocking ``Client``: stdlib ``socket`` + msgpack only (no trio, no compiled extension).

Thread-safe and pipelined: any number of threads may call at once; each request gets a
msgid, the frames of one request are sent under a lock, and whichever waiting thread
finds nobody reading reads replies for everyone and hands them out by msgid.
"""

from __future__ import annotations

import array
import itertools
import os
import socket
import threading
from typing import Any

import msgpack

from ..protocol.codec import (
    MAX_FRAME,
    MAX_MESSAGE,
    FrameDecoder,
    Limits,
    MessageUnpacker,
    ProtocolError,
    encode_frames,
    exception_from_reply,
    parse_reply,
)
from ._common import SPECS, Spec, wrap_fd
from ._generated import ENCODERS, SyncMethods

__all__ = ["Client", "Pending"]

_ANC_SPACE = socket.CMSG_SPACE(16 * array.array("i").itemsize)
#: every fd received is close-on-exec from the moment it arrives: a backend that starts a
#: child process must not leak the project's open files into it (runc CVE-2024-21626 class)
_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_FINAL = b"\x00"
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag & costs microseconds


def _fds_of(anc: list[tuple[int, int, bytes]]) -> list[int]:
    out: list[int] = []
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            out.extend(a)
    return out


def _take_frame(data: bytes, anc: list[tuple[int, int, bytes]], flags: int, fds: list[int],
                feed: Any, unpack: Any) -> tuple[Any, Any, Any] | None:
    """One received datagram (both clients): keep its fds, check it, feed the decoder;
    ``(msgid, error, result)`` once a reply is complete."""
    if anc:
        fds.extend(_fds_of(anc))
    if not data:
        raise ConnectionError("beneathd closed the connection")
    if flags & _MSG_TRUNC:
        raise ConnectionError("oversized frame from beneathd")
    payload = feed(data)
    return None if payload is None else parse_reply(unpack(payload))


def _finish(spec: Spec, vals: tuple[Any, ...], err: Any, res: Any, fds: list[int]) -> Any:
    """A reply as the caller sees it (both clients): the file object for open(), the
    decoded result, or the exception; fds that came with anything else are closed."""
    if spec.returns_fd and err is None:
        if len(fds) != 1:
            _close_all(fds)
            raise OSError(71, "the daemon sent no fd with an open() reply")
        return wrap_fd(spec.values(vals), fds[0])
    if fds:
        _close_all(fds)
    return spec.result(err, res, vals)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _Broken(ConnectionError):
    pass


class Pending:
    """A request sent and not yet answered (from :meth:`Client.submit`)."""

    __slots__ = ("_client", "_spec", "_vals", "_msgid", "_gen", "_done", "_value")

    def __init__(self, client: Client, spec: Spec, vals: tuple[Any, ...], msgid: int, gen: int) -> None:
        self._client = client
        self._spec = spec
        self._vals = vals
        self._msgid = msgid
        self._gen = gen
        self._done = False
        self._value: Any = None

    def result(self) -> Any:
        if not self._done:
            err, res, fds = self._client._wait(self._msgid, self._gen)
            self._done = True
            self._value = _finish(self._spec, self._vals, err, res, fds)
        return self._value


class Client(SyncMethods):
    """The ``Root`` API over a daemon's socket (blocking); the methods are in _generated.py."""

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, timeout: float | None = None,
                 max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._timeout = timeout
        self._limits = Limits.for_responses(max_message)
        self._send_lock = threading.Lock()
        # ``with self._lock`` (C) where no wait/notify is needed; the same lock as _cond
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._results: dict[int, tuple[Any, Any, list[int]]] = {}
        self._pending: set[int] = set()
        self._reading = False
        self._nwait = 0  # threads waiting on _cond
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder(self._limits)
        self._unpack = MessageUnpacker(self._limits)
        self._packb = msgpack.Packer(use_bin_type=True).pack  # under _send_lock only
        self._gen = 0
        self._broken: BaseException | None = None
        self._closed = False
        with self._cond:
            self._connect_locked()

    # -- connection --------------------------------------------------------------------------

    def _connect_locked(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.settimeout(self._timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self._sock = s
        self._decoder = FrameDecoder(self._limits)
        self._unpack = MessageUnpacker(self._limits)
        self._gen += 1
        self._broken = None

    def _break_locked(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._break_locked(ConnectionError("client closed"))
            for _, _, fds in self._results.values():
                _close_all(fds)
            self._results.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<beneathd.Client {self._path!r}{' closed' if self._closed else ''}>"

    def __del__(self) -> None:
        try:
            if self._sock is not None:
                self._sock.close()
        except Exception:
            pass

    # -- requests ----------------------------------------------------------------------------

    def _send(self, name: str, wire: list[Any]) -> tuple[int, int]:
        """Send one request; returns (msgid, connection generation)."""
        with self._lock:
            if self._closed:
                raise ValueError("I/O operation on closed client")
            if self._sock is None or self._broken is not None:
                self._break_locked(ConnectionError("reconnecting"))
                try:
                    self._connect_locked()
                except OSError as e:
                    raise ConnectionError(f"cannot reconnect to beneathd at {self._path!r}: {e}") from e
            sock = self._sock
            gen = self._gen
            msgid = next(self._ids) & 0xFFFFFFFF
            self._pending.add(msgid)
        assert sock is not None
        try:
            with self._send_lock:
                payload = self._packb([0, msgid, name, wire])
                if len(payload) < MAX_FRAME:
                    sock.sendmsg([_FINAL, payload])
                else:
                    for fr in encode_frames(payload, MAX_FRAME):
                        sock.sendmsg([fr])
        except OSError as e:
            with self._lock:
                self._pending.discard(msgid)
                if self._gen == gen:
                    self._break_locked(e)
            raise _Broken(f"connection to beneathd at {self._path!r} broken: {e}") from e
        except BaseException:
            with self._lock:
                self._pending.discard(msgid)
            raise
        return msgid, gen

    def _recv_one(self, sock: socket.socket) -> tuple[Any, Any, Any, list[int]]:
        feed = self._decoder.feed
        fds: list[int] = []
        try:
            while True:
                data, anc, flags, _ = sock.recvmsg(MAX_FRAME + 1, _ANC_SPACE, _CLOEXEC)
                reply = _take_frame(data, anc, flags, fds, feed, self._unpack)
                if reply is not None:
                    return reply[0], reply[1], reply[2], fds
        except ProtocolError as e:
            _close_all(fds)
            raise ConnectionError(f"protocol error from beneathd: {e.message}") from None
        except BaseException:
            _close_all(fds)
            raise

    def _wait(self, msgid: int, gen: int) -> tuple[Any, Any, list[int]]:
        cond = self._cond
        with self._lock:
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
                        self._nwait += 1
                        try:
                            cond.wait()
                        finally:
                            self._nwait -= 1
                        continue
                    self._reading = True
                    sock = self._sock
                    cond.release()
                    exc: BaseException | None = None
                    msg = None
                    try:
                        assert sock is not None
                        msg = self._recv_one(sock)
                    except (OSError, ValueError) as e:
                        exc = e
                    finally:
                        cond.acquire()
                        self._reading = False
                        if self._nwait:
                            cond.notify_all()
                    if self._gen != gen:
                        if msg is not None:
                            _close_all(msg[3])
                        continue
                    if exc is not None:
                        self._break_locked(exc if isinstance(exc, OSError) else ConnectionError(str(exc)))
                        continue
                    assert msg is not None
                    rid, err, res, fds = msg
                    if rid is None:
                        # a connection-level error (peer refused, too many connections,
                        # a request the daemon could not read): every waiter gets it
                        _close_all(fds)
                        e2 = exception_from_reply(err)
                        e2._beneathd = True  # type: ignore[attr-defined]
                        self._break_locked(e2)
                        continue
                    if rid in self._pending:
                        self._results[rid] = (err, res, fds)
                    else:
                        _close_all(fds)
            finally:
                self._pending.discard(msgid)

    def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any]) -> Any:
        try:
            msgid, gen = self._send(spec.name, wire)
            err, res, fds = self._wait(msgid, gen)
        except _Broken:
            if not spec.retryable(vals):
                raise
            msgid, gen = self._send(spec.name, wire)
            err, res, fds = self._wait(msgid, gen)
        if fds or spec.returns_fd:
            return _finish(spec, vals, err, res, fds)
        return spec.result(err, res, vals)

    def submit(self, name: str, *args: Any, **kwargs: Any) -> Pending:
        """Send a request without waiting (pipelining); ``.result()`` waits for its reply."""
        spec = SPECS[name]
        vals, wire = ENCODERS[name](*args, **kwargs)
        msgid, gen = self._send(name, wire)
        return Pending(self, spec, vals, msgid, gen)
