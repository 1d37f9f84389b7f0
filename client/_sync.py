"""The blocking ``Client``: stdlib ``socket`` + msgpack only (no trio, no compiled extension).

A thin I/O shell around :class:`~beneathd.protocol.connection.ClientConnection`, which
owns msgids, frames and the filing of replies.  Thread-safe and pipelined: any number of
threads may call at once; the frames of one request are sent under a lock, and whichever
waiting thread finds nobody reading reads replies for everyone (the connection files
them by msgid, and the waiters check under one condition).
"""

from __future__ import annotations

import array
import errno
import io
import os
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

from ..protocol.codec import MAX_FRAME, MAX_MESSAGE, Limits
from ..protocol.connection import ClientConnection, Partial, Reply, close_fds
from ..protocol.types import AtomicFile, Progress, WatchEvent, read_counted, walk_counted, write_counted
from . import _common
from ._common import (
    SPECS,
    ConnectionLost,
    Spec,
    WalkPages,
    call_options,
    check_timeout,
    finish,
    lost,
    progress_of,
    timed_out,
    watch_ended,
    watch_events,
)
from ._generated import ENCODERS, PathArg, SyncMethods

__all__ = ["Client", "Pending", "Watch"]

_ANC_SPACE = socket.CMSG_SPACE(16 * array.array("i").itemsize)
#: every fd received is close-on-exec from the moment it arrives: a backend that starts a
#: child process must not leak the project's open files into it (runc CVE-2024-21626 class)
_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_BUFSIZE = MAX_FRAME + 1  # one byte more than a frame may be: a longer one shows as MSG_TRUNC


def recv_buffer() -> memoryview:
    """A reusable receive buffer for one reader: ``recvmsg(_BUFSIZE)`` allocates 200 KiB per
    call (a malloc above glibc's mmap threshold, then a shrink: ~20 us of a ~27 us
    send+receive on a socketpair here), ``recvmsg_into`` fills this one and the datagram is
    copied out at its own size."""
    return memoryview(bytearray(_BUFSIZE))
_DONTWAIT = int(socket.MSG_DONTWAIT)


class _Deadline(Exception):
    """A call's deadline passed while it waited (becomes TimeoutError in _call_long)."""


class Pending:
    """A request sent and not yet answered (from :meth:`Client.submit`)."""

    __slots__ = ("_client", "_spec", "_vals", "_conn", "_msgid", "_done", "_value")

    def __init__(self, client: Client, spec: Spec, vals: tuple[Any, ...], conn: ClientConnection,
                 msgid: int) -> None:
        self._client = client
        self._spec = spec
        self._vals = vals
        self._conn = conn
        self._msgid = msgid
        self._done = False
        self._value: Any = None

    def result(self) -> Any:
        if not self._done:
            reply = self._client._wait(self._conn, self._msgid)
            self._done = True
            self._value = finish(self._spec, self._vals, reply, self._client._atomic_file)
        return self._value


class Client(SyncMethods):
    """The ``Root`` API over a daemon's socket (blocking); the methods are in _generated.py."""

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, timeout: float | None = None,
                 max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._timeout = timeout
        self._limits = Limits.for_responses(max_message)
        #: one sender at a time (frames of two requests never interleave)
        self._send_lock = threading.Lock()
        # ``with self._lock`` (C) where no wait/notify is needed; the same lock as _cond
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._reading = False
        self._rbuf = recv_buffer()  # used by the one thread reading (_reading)
        self._nwait = 0  # threads waiting on _cond
        self._sock: socket.socket | None = None
        self._conn = ClientConnection(self._limits)
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
        self._conn = ClientConnection(self._limits)
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
            self._conn.close()

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

    def _send(self, name: str, wire: list[Any], options: dict[str, Any] | None = None
              ) -> tuple[ClientConnection, int]:
        """Send one request; returns the connection it went out on and its msgid."""
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
            conn = self._conn
        assert sock is not None
        with self._send_lock:
            msgid, datagrams = conn.request(name, wire, options)
            try:
                for bufs in datagrams:
                    sock.sendmsg(bufs)
            except BaseException as e:
                with self._lock:
                    conn.forget(msgid)
                    if isinstance(e, OSError) and self._conn is conn:
                        self._break_locked(e)
                if isinstance(e, OSError):
                    raise ConnectionLost(f"connection to beneathd at {self._path!r} broken: {e}") from e
                raise
        return conn, msgid

    def _send_cancel(self, conn: ClientConnection, msgid: int) -> None:
        """Forget ``msgid`` and ask the daemon to stop it (best effort: never blocks)."""
        with self._lock:
            datagrams = conn.cancel(msgid)
            sock = self._sock if self._conn is conn else None
        if sock is not None:
            with self._send_lock:
                try:
                    sock.sendmsg(datagrams[0], [], _DONTWAIT)
                except OSError:
                    pass  # a full or broken socket: the call ends with the connection anyway

    @staticmethod
    def _read_message(sock: socket.socket, conn: ClientConnection, view: memoryview,
                      deadline: float | None = None) -> Any:
        """Read until a message is whole (one reader at a time: ``view`` is the client's)."""
        receive = conn.receive
        recvmsg_into = sock.recvmsg_into
        bufs = [view]
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                poll = select.poll()  # not select(): fds above 1024 are common in a backend
                poll.register(sock, select.POLLIN)
                if left <= 0 or not poll.poll(left * 1000):
                    raise _Deadline
            n, anc, flags, _ = recvmsg_into(bufs, _ANC_SPACE, _CLOEXEC)
            event = receive(view[:n].tobytes(), anc, flags)
            if event is not None:
                return event

    def _wait(self, conn: ClientConnection, msgid: int) -> Reply:
        """The final reply to ``msgid`` (intermediate messages nobody asked for are dropped)."""
        while True:
            ev = self._next(conn, msgid)
            if ev.__class__ is Reply:
                return ev  # type: ignore[return-value]
            close_fds(ev.fds)

    def _next(self, conn: ClientConnection, msgid: int, deadline: float | None = None,
              keep: bool = False) -> Reply | Partial:
        """The next message for ``msgid``: filed already, or read by this thread if nobody
        reads.  Past ``deadline`` raises ``_Deadline``; the call is forgotten on any error
        (but for ``_Deadline`` with ``keep``: a watch's ``next(timeout)``)."""
        cond = self._cond
        with self._lock:
            try:
                while True:
                    ev = conn.take(msgid)
                    if ev is not None:
                        return ev
                    if self._conn is not conn or self._broken is not None:
                        raise lost(self._broken if self._conn is conn else conn.error, conn, self._path)
                    if self._reading:
                        self._nwait += 1
                        try:
                            if deadline is None:
                                cond.wait()
                            elif not cond.wait(deadline - time.monotonic()) and time.monotonic() >= deadline:
                                raise _Deadline
                        finally:
                            self._nwait -= 1
                        continue
                    self._reading = True
                    sock = self._sock
                    cond.release()
                    exc: BaseException | None = None
                    try:
                        assert sock is not None
                        ev = self._read_message(sock, conn, self._rbuf, deadline)
                    except (OSError, ValueError) as e:
                        exc = e
                    finally:
                        cond.acquire()
                        self._reading = False
                        if self._nwait:
                            cond.notify_all()
                    if exc is not None or ev is None:
                        if self._conn is conn:
                            self._break_locked(exc if isinstance(exc, OSError) else ConnectionError(str(exc)))
                        continue
                    if ev.msgid == msgid:
                        if ev.__class__ is Reply:
                            conn.forget(msgid)  # over: nothing more is filed for it
                        return ev
                    failed = conn.deliver(ev)  # another caller's, or about the connection
                    if failed is not None and self._conn is conn:
                        self._break_locked(failed)
            except _Deadline:
                if not keep:
                    conn.forget(msgid)
                raise
            except BaseException:
                conn.forget(msgid)
                raise

    def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any:
        if timeout is not None or spec.progress_at is not None:
            return self._call_long(spec, vals, wire, timeout)
        try:
            conn, msgid = self._send(spec.name, wire, spec.options)
            reply = self._wait(conn, msgid)
        except ConnectionLost:
            if not spec.retryable(vals):
                raise
            conn, msgid = self._send(spec.name, wire, spec.options)
            reply = self._wait(conn, msgid)
        if reply.fds or spec.returns_fd:
            return finish(spec, vals, reply, self._atomic_file)
        return spec.result(reply.error, reply.result, vals)

    def _call_long(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None) -> Any:
        """A call with a deadline or a progress callback (version 2 call options)."""
        progress, options = call_options(spec, vals)
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        for attempt in (0, 1):
            conn, msgid = self._send(spec.name, wire, options)
            try:
                while True:
                    ev = self._next(conn, msgid, deadline)
                    if ev.__class__ is Reply:
                        return finish(spec, vals, ev, self._atomic_file)  # type: ignore[arg-type]
                    close_fds(ev.fds)
                    p = progress_of(ev.data) if progress is not None and ev.kind == "progress" else None  # type: ignore[union-attr]
                    if p is not None:
                        progress(p)  # in the caller's thread, no lock held
            except _Deadline:
                self._send_cancel(conn, msgid)
                raise timed_out(spec, timeout or 0.0) from None
            except ConnectionLost:
                if attempt or not spec.retryable(vals):
                    raise
            except BaseException:
                self._send_cancel(conn, msgid)  # a progress callback raised, or an interrupt
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- atomic writers and payloads of any size -----------------------------------------------

    def _atomic_file(self, values: dict[str, Any], fd: int, handle: int) -> AtomicFile:
        try:
            f = io.open(fd, values["mode"].replace("x", "w"), buffering=values["buffering"],
                        encoding=values["encoding"], closefd=True)
        except BaseException:
            os.close(fd)
            self._writer("writer_discard", handle)
            raise
        return AtomicFile(f, lambda: self._writer("writer_publish", handle),
                          lambda: self._writer("writer_discard", handle, quiet=True), values["path"])

    def _writer(self, name: str, handle: int, quiet: bool = False) -> None:
        """Publish or discard an atomic writer (never retried: it is the daemon's state)."""
        try:
            conn, msgid = self._send(name, [handle])
            reply = self._wait(conn, msgid)
        except (OSError, ValueError):
            if quiet:
                return  # a broken connection or a closed client: the daemon dropped it anyway
            raise
        if reply.error is not None and not quiet:
            SPECS[name].result(reply.error, None, (handle,))

    def read_file(self, path: PathArg, *, progress: Callable[[Progress], Any] | None = None,
                  timeout: float | None = None) -> bytes:
        """The whole contents of a regular file, of any size: read here through the fd the
        daemon opens (no message limit, no copy through the socket)."""
        with self.open(path, "rb", buffering=0, timeout=timeout) as f:
            return read_counted(f, progress)  # (a plain readall without progress)

    def write_file(self, path: PathArg, data: bytes | bytearray | memoryview, *, mode: int = 0o666,
                   progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """Atomic replace, of any size: up to BIG_WRITE bytes in the request itself, above
        that written here into an atomic writer's fd (published whole, or not at all)."""
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > _common.BIG_WRITE:
            with self.open(path, "wb", buffering=0, perms=mode, atomic=True, timeout=timeout) as f:
                write_counted(f, data, progress)
            return
        SyncMethods.write_file(self, path, data, mode=mode, progress=progress, timeout=timeout)

    def _stream(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None
                ) -> Iterator[Any]:
        """A streamed call (walk): a generator of its tuples (with its ``progress``)."""
        progress = vals[spec.progress_at] if spec.progress_at is not None else None
        return walk_counted(self._stream_tuples(spec, vals, wire, timeout), progress)

    def _stream_tuples(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None
                       ) -> Iterator[Any]:
        """The tuples of a streamed call; pages are taken back from the daemon as they are
        read (at most STREAM_CREDIT ahead), and leaving the loop early cancels the walk."""
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        pages = WalkPages(spec, vals)
        conn, msgid = self._send(spec.name, wire)
        done = False
        try:
            while True:
                try:
                    ev = self._next(conn, msgid, deadline)
                except _Deadline:
                    raise timed_out(spec, timeout or 0.0) from None
                if ev.__class__ is Reply:
                    done = True
                    finish(spec, vals, ev)  # type: ignore[arg-type]  # raises the call's error, if any
                    return
                close_fds(ev.fds)
                if ev.kind != "walk":  # type: ignore[union-attr]
                    continue
                self._send_more(conn, msgid)
                yield from pages.tuples(ev.data)  # type: ignore[union-attr]
        finally:
            if not done:
                self._send_cancel(conn, msgid)

    def _batch(self, calls: Any, stop_on_error: bool, timeout: float | None) -> list[Any]:
        """One request for all the calls (sent again after a broken connection only if none
        of them can change anything)."""
        plan = _common.BatchPlan(calls, stop_on_error)
        if not plan.wire:
            return plan.slots
        return plan.results(self._call(SPECS["batch"], plan.vals, [plan.wire, bool(stop_on_error)], timeout))

    def _watch(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Watch:
        """A watch, returned once the daemon has it in place (its first, empty page)."""
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        conn, msgid = self._send(spec.name, wire)
        w = Watch(self, spec, vals, conn, msgid)
        try:
            w._page(deadline, timeout)
            if w._error is not None:
                raise w._error  # it could not be set up
        except BaseException:
            w.close()
            raise
        return w

    def _send_more(self, conn: ClientConnection, msgid: int) -> None:
        """Give a stream back one page of credit (a blocking send: credit must not be lost)."""
        with self._lock:
            sock = self._sock if self._conn is conn else None
        if sock is not None:
            with self._send_lock:
                try:
                    sock.sendmsg(conn.more(msgid)[0])
                except OSError:
                    pass  # the connection is going: the next read says so

    def submit(self, name: str, *args: Any, **kwargs: Any) -> Pending:
        """Send a request without waiting (pipelining); ``.result()`` waits for its reply."""
        spec = SPECS[name]
        vals, wire = ENCODERS[name](*args, **kwargs)
        conn, msgid = self._send(name, wire, spec.options)
        return Pending(self, spec, vals, conn, msgid)


class Watch:
    """``Client.watch``: a blocking iterator of ``WatchEvent`` (and a context manager).

    ``next(timeout)`` raises ``TimeoutError`` when nothing came in time (the watch goes
    on); iteration ends when the watch does (its top deleted or moved; an error that ended
    it, such as the watch limit, is raised once first). ``close()`` tells the daemon to
    remove its kernel watches."""

    def __init__(self, client: Client, spec: Spec, vals: tuple[Any, ...], conn: ClientConnection, msgid: int) -> None:
        self._client, self._spec, self._vals = client, spec, vals
        self._conn, self._msgid = conn, msgid
        self._as_bytes = isinstance(os.fspath(vals[0]), bytes)
        self._events: deque[WatchEvent] = deque()
        self._done = False
        self._error: OSError | None = None

    def _page(self, deadline: float | None, timeout: float | None) -> None:
        """Wait for the next message of the watch and take it in."""
        try:
            ev = self._client._next(self._conn, self._msgid, deadline, keep=True)
        except _Deadline:
            raise TimeoutError(errno.ETIMEDOUT, f"no watch event within {timeout:g} s") from None
        if ev.__class__ is Reply:
            self._done = True
            self._error = watch_ended(self._spec, self._vals, ev)  # type: ignore[arg-type]
            return
        close_fds(ev.fds)
        if ev.kind == "watch":  # type: ignore[union-attr]
            self._client._send_more(self._conn, self._msgid)
            self._events.extend(watch_events(self._spec, ev.data, self._as_bytes))  # type: ignore[union-attr]

    def next(self, timeout: float | None = None) -> WatchEvent:
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        while not self._events:
            if self._done:
                err, self._error = self._error, None
                if err is not None:
                    raise err
                raise StopIteration
            if deadline is not None:
                self._page(deadline, timeout)
                continue
            try:  # waited for in polls, not in a recv the client's socket timeout would break
                self._page(time.monotonic() + 60.0, 60.0)
            except TimeoutError:
                pass
        return self._events.popleft()

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        return self.next()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._client._send_cancel(self._conn, self._msgid)
        self._events.clear()

    @property
    def closed(self) -> bool:
        return self._done

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
