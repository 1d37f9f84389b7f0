"""``AsyncClient``: the ``Root`` API over the socket, awaited, under trio or asyncio.

Written against ``anyio``, which runs on both (and on uvloop): the socket waits are
``anyio.wait_readable``/``wait_writable`` (trio's own on trio, the loop's reader and writer
callbacks on asyncio), cancellation is the running library's own (a trio cancel scope, an
asyncio task's ``cancel()``), and the protocol is the one ``ClientConnection``.
Any number of tasks may call at once (pipelined); whichever waiting task finds nobody
reading reads replies for everyone and hands them out by msgid.
"""

from __future__ import annotations

import errno
import io
import math
import os
import threading
import socket as _stdsocket
import sys
from collections import deque
from typing import Any, AsyncIterator, Callable

import anyio
import anyio.lowlevel

from ..protocol.codec import MAX_MESSAGE, Limits
from ..protocol.connection import ClientConnection, Partial, Reply, close_fds
from ..protocol.types import _PROGRESS_INTERVAL, FileProxy, Progress, WatchEvent, read_counted, write_counted
from . import _common as _c  # (its names as _c.X: the blocking client imports them plainly)
from ._generated import AsyncMethods, PathArg
from ._sync import _ANC_SPACE, _CLOEXEC, recv_buffer

__all__ = ["AsyncClient", "AsyncWatch"]

_wait_readable = anyio.wait_readable
_wait_writable = anyio.wait_writable


def _closed_errors() -> tuple[type[BaseException], ...]:
    """What a wait raises when the socket is closed under it: anyio's, and trio's own on
    trio (anyio's trio backend lets it through)."""
    t = sys.modules.get("trio")
    return (anyio.ClosedResourceError,) + ((t.ClosedResourceError,) if t is not None else ())


def _send_errors() -> tuple[type[BaseException], ...]:
    return (OSError, *_closed_errors())


def _notify_closing(sock: _stdsocket.socket) -> None:
    try:
        anyio.notify_closing(sock)
    except Exception:  # not inside an event loop (the synchronous close())
        pass


class AsyncClient(AsyncMethods):
    """``async with AsyncClient(path) as fs: await fs.stat("x")``; connects in ``__aenter__``.

    A thin I/O shell around :class:`~beneathd.protocol.connection.ClientConnection`.  The
    socket is a stdlib socket in non-blocking mode: ``sendmsg``/``recvmsg`` are tried at
    once and the event loop is only asked to wait (``wait_readable``/``wait_writable``)
    when they would block.  Every call is a checkpoint.  Under trio or asyncio (one loop
    per client: the loop it connected in).
    """

    def __init__(self, socket_path: str | bytes | os.PathLike[Any], *, max_message: int = MAX_MESSAGE) -> None:
        self._path = os.fspath(socket_path)
        self._limits = Limits.for_responses(max_message)
        self._reading = False
        self._rbuf = recv_buffer()  # used by the one task reading (_reading)
        self._nwait = 0  # tasks waiting on _wake
        self._wake = anyio.Event()
        #: one sender at a time for requests of several frames (they must not interleave)
        self._send_lock = anyio.Lock()
        self._connect_lock = anyio.Lock()
        self._sock: _stdsocket.socket | None = None
        self._conn = ClientConnection(self._limits)
        self._broken: BaseException | None = None
        self._closed = False
        self._yielded = False  # set by _read_message when it had to wait
        #: cancel notifications waiting for the socket (or for a half-sent request)
        self._cancels: list[tuple[bytes, ...]] = []
        self._loop_thread = 0

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._sock is not None and self._broken is None:
                return
            self._drop()
            raw = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_SEQPACKET | _stdsocket.SOCK_CLOEXEC)
            try:
                raw.setblocking(False)
                try:
                    raw.connect(self._path)
                except BlockingIOError:  # (a full backlog) the connect completes later
                    await _wait_writable(raw)
                    err = raw.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err), self._path)
                await anyio.lowlevel.checkpoint()
            except BaseException:
                raw.close()
                raise
            self._sock = raw
            self._conn = ClientConnection(self._limits)
            self._cancels = []
            self._loop_thread = threading.get_ident()
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
        self._wake = anyio.Event()
        ev.set()

    async def aclose(self) -> None:
        self._closed = True
        self._break(ConnectionError("client closed"))
        self._conn.close()

    def close(self) -> None:
        """Synchronous close (also usable outside the event loop)."""
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

    async def _send(self, name: str, wire: list[Any], options: dict[str, Any] | None = None
                    ) -> tuple[ClientConnection, int]:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise ValueError("I/O operation on closed client")
        if self._sock is None or self._broken is not None:
            try:
                await self.connect()
            except OSError as e:
                raise ConnectionError(f"cannot reconnect to beneathd at {self._path!r}: {e}") from e
        sock, conn = self._sock, self._conn
        assert sock is not None
        lock = self._send_lock
        if self._cancels and not lock.locked():
            self._flush_cancels(sock)
        msgid, datagrams = conn.request(name, wire, options)
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
                if self._cancels:
                    self._flush_cancels(sock)
        except _send_errors() as e:
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
        raise _c.ConnectionLost(f"connection to beneathd at {self._path!r} broken: {e}") from e

    def _send_cancel(self, conn: ClientConnection, msgid: int) -> None:
        """Forget a call still under way and ask the daemon to stop it, without waiting:
        when another request is half sent (or the socket is full) the cancel goes out
        right after it."""
        if not conn.waiting(msgid):
            return
        datagram = conn.cancel(msgid)[0]
        sock = self._sock
        if self._conn is not conn or sock is None:
            return  # the connection is gone, and the call with it
        self._cancels.append(datagram)
        if not self._send_lock.locked():
            self._flush_cancels(sock)

    def _flush_cancels(self, sock: _stdsocket.socket) -> None:
        while self._cancels:
            try:
                sock.sendmsg(self._cancels[0])
            except BlockingIOError:
                return  # the next request takes them along
            except OSError:
                self._cancels.clear()
                return
            del self._cancels[0]

    async def _read_message(self, sock: _stdsocket.socket, conn: ClientConnection) -> Any:
        receive = conn.receive
        view = self._rbuf
        bufs = [view]
        try:
            while True:
                try:
                    n, anc, flags, _ = sock.recvmsg_into(bufs, _ANC_SPACE, _CLOEXEC)
                except BlockingIOError:
                    self._yielded = True
                    await _wait_readable(sock)
                    continue
                event = receive(view[:n].tobytes(), anc, flags)  # copied out before any await
                if event is not None:
                    return event
        except _closed_errors():
            raise ConnectionError("connection to beneathd closed") from None

    async def _wait(self, conn: ClientConnection, msgid: int) -> Reply:
        """The final reply to ``msgid`` (intermediate messages nobody asked for are dropped)."""
        while True:
            ev = await self._next(conn, msgid)
            if ev.__class__ is Reply:
                return ev  # type: ignore[return-value]
            close_fds(ev.fds)

    async def _next(self, conn: ClientConnection, msgid: int, keep: bool = False) -> Reply | Partial:
        """The next message for ``msgid``; whichever waiter finds nobody reading reads.

        A checkpoint, as every awaited call: when the final reply was there without waiting,
        it still lets other tasks run (and honours a cancellation) before returning.
        Cancelled, the call is forgotten and the daemon asked to stop it (but with ``keep``:
        a watch's ``next(timeout)``, which goes on)."""
        yielded = False
        try:
            while True:
                ev = conn.take(msgid)
                if ev is None:
                    if self._conn is not conn or self._broken is not None:
                        raise _c.lost(self._broken if self._conn is conn else conn.error, conn, self._path)
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
                    if ev.msgid != msgid:
                        failed = conn.deliver(ev)  # another caller's, or about the connection
                        if failed is not None and self._conn is conn:
                            self._break(failed)
                        continue
                    if ev.__class__ is Reply:
                        conn.forget(msgid)  # over: nothing more is filed for it
                if ev.__class__ is not Reply:
                    return ev
                if not yielded:
                    try:
                        await anyio.lowlevel.checkpoint()
                    except BaseException:
                        close_fds(ev.fds)
                        raise
                return ev  # type: ignore[return-value]
        except anyio.get_cancelled_exc_class():
            if not keep:
                self._send_cancel(conn, msgid)  # cancelled: a reply that comes later is dropped
            raise
        except BaseException:
            self._send_cancel(conn, msgid)
            raise

    async def _call(self, spec: _c.Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any:
        if timeout is not None or spec.progress_at is not None:
            return await self._call_long(spec, vals, wire, timeout)
        try:
            conn, msgid = await self._send(spec.name, wire, spec.options)
            reply = await self._wait(conn, msgid)
        except _c.ConnectionLost:
            if not spec.retryable(vals):
                raise
            conn, msgid = await self._send(spec.name, wire, spec.options)
            reply = await self._wait(conn, msgid)
        if reply.fds or spec.returns_fd:
            return _c.finish(spec, vals, reply, self._atomic_file)
        return spec.result(reply.error, reply.result, vals)

    async def _call_long(self, spec: _c.Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None) -> Any:
        """A call with a deadline or a progress callback (version 2 call options); a
        cancelled task, or one out of time, stops the daemon's work too."""
        progress, options = _c.call_options(spec, vals)
        with anyio.move_on_after(math.inf if timeout is None else _c.check_timeout(timeout)):
            for attempt in (0, 1):
                conn, msgid = await self._send(spec.name, wire, options)
                try:
                    while True:
                        ev = await self._next(conn, msgid)
                        if ev.__class__ is Reply:
                            return _c.finish(spec, vals, ev, self._atomic_file)  # type: ignore[arg-type]
                        close_fds(ev.fds)
                        p = _c.progress_of(ev.data) if progress is not None and ev.kind == "progress" else None  # type: ignore[union-attr]
                        if p is not None:
                            progress(p)
                except _c.ConnectionLost:
                    if attempt or not spec.retryable(vals):
                        raise
                except BaseException:
                    self._send_cancel(conn, msgid)  # a progress callback raised
                    raise
        raise _c.timed_out(spec, timeout or 0.0)

    async def _stream(self, spec: _c.Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None
                      ) -> AsyncIterator[Any]:
        """A streamed call (walk) as an async generator (``async for``); leaving the loop
        early, or cancelling the task, cancels the daemon's walk."""
        pages = _c.WalkPages(spec, vals)
        deadline = math.inf if timeout is None else anyio.current_time() + _c.check_timeout(timeout)
        conn, msgid = await self._send(spec.name, wire)
        done = False
        entries, last = 1, anyio.current_time()  # progress: names listed so far, the top included
        try:
            while True:
                ev = None
                with anyio.CancelScope(deadline=deadline):
                    ev = await self._next(conn, msgid)
                if ev is None:
                    raise _c.timed_out(spec, timeout or 0.0)
                if ev.__class__ is Reply:
                    done = True
                    if pages.progress is not None and ev.error is None:  # type: ignore[union-attr]
                        pages.progress(Progress(entries, 0))
                    _c.finish(spec, vals, ev)  # type: ignore[arg-type]  # raises the call's error, if any
                    return
                close_fds(ev.fds)
                if ev.kind != "walk":  # type: ignore[union-attr]
                    continue
                await self._send_more(conn, msgid)
                for t in pages.tuples(ev.data):  # type: ignore[union-attr]
                    yield t
                    entries += len(t[1]) + len(t[2])
                    if pages.progress is not None and anyio.current_time() - last >= _PROGRESS_INTERVAL:
                        last = anyio.current_time()
                        pages.progress(Progress(entries, 0))
        finally:
            if not done:
                self._send_cancel(conn, msgid)

    async def _batch(self, calls: Any, stop_on_error: bool, timeout: float | None) -> list[Any]:
        plan = _c.BatchPlan(calls, stop_on_error)
        if not plan.wire:
            return plan.slots
        return plan.results(await self._call(_c.SPECS["batch"], plan.vals, [plan.wire, bool(stop_on_error)],
                                             timeout))

    def _watch(self, spec: _c.Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None
               ) -> AsyncWatch:
        return AsyncWatch(self, spec, vals, wire, timeout)

    async def _send_more(self, conn: ClientConnection, msgid: int) -> None:
        """Give a stream back one page of credit (waits for room: credit must not be _c.lost)."""
        sock = self._sock
        if self._conn is not conn or sock is None:
            return
        datagram = conn.more(msgid)[0]
        async with self._send_lock:
            while True:
                try:
                    sock.sendmsg(datagram)
                    return
                except BlockingIOError:
                    await _wait_writable(sock)
                except _send_errors():
                    return

    # -- atomic writers and payloads of any size -----------------------------------------------

    def _atomic_file(self, values: dict[str, Any], fd: int, handle: int) -> AsyncAtomicFile:
        try:
            f = io.open(fd, values["mode"].replace("x", "w"), buffering=values["buffering"],
                        encoding=values["encoding"], closefd=True)
        except BaseException:
            os.close(fd)
            self._writer_dropped(handle)
            raise
        return AsyncAtomicFile(self, f, handle, values["path"])

    async def _writer(self, name: str, handle: int) -> None:
        conn, msgid = await self._send(name, [handle])
        reply = await self._wait(conn, msgid)
        if reply.error is not None:
            _c.SPECS[name].result(reply.error, None, (handle,))

    def _writer_dropped(self, handle: int) -> None:
        """Discard without waiting (a writer dropped unclosed): the request goes out if the
        socket takes it at once; else the daemon drops the writer when the peer leaves."""
        sock, conn = self._sock, self._conn
        if sock is None or self._broken is not None or self._send_lock.locked() or \
                threading.get_ident() != self._loop_thread:
            return  # (a finalizer may run in any thread: only the loop's may touch the state)
        msgid, datagrams = conn.request("writer_discard", [handle])
        conn.forget(msgid)
        try:
            sock.sendmsg(datagrams[0])
        except OSError:
            pass

    async def read_file(self, path: PathArg, *, progress: Callable[[Progress], Any] | None = None,
                        timeout: float | None = None) -> bytes:
        """The whole contents of a regular file, of any size: read here through the fd the
        daemon opens (a big one in a worker thread, so the loop is not held up; ``progress``
        is still called on this task's loop)."""
        with await self.open(path, "rb", buffering=0, timeout=timeout) as f:
            if os.fstat(f.fileno()).st_size <= _INLINE_READ:
                return read_counted(f, progress)
            return await anyio.to_thread.run_sync(read_counted, f, _on_loop(progress))

    async def write_file(self, path: PathArg, data: bytes | bytearray | memoryview, *, mode: int = 0o666,
                         progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """Atomic replace, of any size (above BIG_WRITE written into an atomic writer's fd,
        in a worker thread)."""
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > _c.BIG_WRITE:
            f: Any = await self.open(path, "wb", buffering=0, perms=mode, atomic=True, timeout=timeout)
            async with f:
                await anyio.to_thread.run_sync(write_counted, f, data, _on_loop(progress))
            return
        await AsyncMethods.write_file(self, path, data, mode=mode, progress=progress, timeout=timeout)


#: files up to this size are read on the loop (one read); bigger ones in a worker thread
_INLINE_READ = 1024 * 1024


def _on_loop(progress: Callable[[Progress], Any] | None) -> Callable[[Progress], Any] | None:
    """A progress callback called from a worker thread, run on the caller's loop."""
    if progress is None:
        return None
    return lambda p: anyio.from_thread.run_sync(progress, p)


class AsyncAtomicFile(FileProxy):
    """``AsyncClient.open(path, mode, atomic=True)``'s file object: writes go to a local fd
    (plain, blocking calls: the data is written here, not sent); ``await aclose()`` (or
    leaving an ``async with`` block) publishes at ``path`` whole; ``await discard()``, an
    exception in the block, or dropping it unclosed publishes nothing. There is no
    synchronous ``close()``: publishing is a call to the daemon."""

    def __init__(self, client: AsyncClient, f: Any, handle: int, path: Any) -> None:
        super().__init__(f, path)
        self._client = client
        self._handle = handle

    def close(self) -> None:
        raise RuntimeError("an AsyncClient atomic writer is published with 'await f.aclose()' "
                           "(or 'async with'); 'await f.discard()' drops it")

    async def aclose(self) -> None:
        """Flush and publish (once)."""
        if self._done:
            return
        try:
            self._f.close()
        except BaseException:
            await self.discard()
            raise
        self._done = True
        try:
            await self._client._writer("writer_publish", self._handle)
        except OSError as e:
            if e.filename is None:
                e.filename = self.name
            raise

    async def discard(self) -> None:
        if not self._drop_local():
            return
        try:
            await self._client._writer("writer_discard", self._handle)
        except (OSError, ValueError):
            pass  # a broken connection or a closed client: the daemon dropped it anyway

    async def __aenter__(self) -> AsyncAtomicFile:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            with anyio.CancelScope(shield=True):
                await self.discard()

    def __del__(self) -> None:
        try:
            if not self._done:
                self._done = True
                self._f.close()
                self._client._writer_dropped(self._handle)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<beneathd.AsyncAtomicFile {self.name!r}{' done' if self._done else ''}>"


class AsyncWatch:
    """``AsyncClient.watch``: ``async with fs.watch(...) as w: async for ev in w``.

    Entering the block waits until the daemon has the watch in place; leaving it (or
    ``aclose()``) ends it. ``await w.next(timeout)`` raises ``TimeoutError`` when nothing
    came in time; a task cancelled while it waits leaves the watch going."""

    def __init__(self, client: AsyncClient, spec: _c.Spec, vals: tuple[Any, ...], wire: list[Any],
                 timeout: float | None) -> None:
        self._client, self._spec, self._vals, self._wire = client, spec, vals, wire
        self._timeout = None if timeout is None else _c.check_timeout(timeout)
        self._as_bytes = isinstance(os.fspath(vals[0]), bytes)
        self._conn: ClientConnection | None = None
        self._msgid = 0
        self._events: deque[WatchEvent] = deque()
        self._done = False
        self._error: OSError | None = None

    async def start(self) -> AsyncWatch:
        """Send the watch and wait until it is in place (``__aenter__`` does it)."""
        if self._conn is not None:
            return self
        self._conn, self._msgid = await self._client._send(self._spec.name, self._wire)
        try:
            with anyio.fail_after(math.inf if self._timeout is None else self._timeout):
                await self._page()
            if self._error is not None:
                raise self._error  # it could not be set up
        except TimeoutError as e:
            if isinstance(e, OSError) and e.errno:  # (a TimeoutError the daemon sent)
                self.close()
                raise
            self.close()
            raise _c.timed_out(self._spec, self._timeout or 0.0) from None
        except BaseException:
            self.close()
            raise
        return self

    async def _page(self) -> None:
        assert self._conn is not None
        ev = await self._client._next(self._conn, self._msgid, keep=True)
        if ev.__class__ is Reply:
            self._done = True
            self._error = _c.watch_ended(self._spec, self._vals, ev)  # type: ignore[arg-type]
            return
        close_fds(ev.fds)
        if ev.kind == "watch":  # type: ignore[union-attr]
            self._events.extend(_c.watch_events(self._spec, ev.data, self._as_bytes))  # type: ignore[union-attr]
            with anyio.CancelScope(shield=True):  # a next(timeout) running out must not lose the credit
                await self._client._send_more(self._conn, self._msgid)

    async def next(self, timeout: float | None = None) -> WatchEvent:
        """The next event (``StopAsyncIteration`` once the watch has ended)."""
        await self.start()
        with anyio.move_on_after(math.inf if timeout is None else _c.check_timeout(timeout)):
            while not self._events:
                if self._done:
                    err, self._error = self._error, None
                    if err is not None:
                        raise err
                    raise StopAsyncIteration
                await self._page()
            return self._events.popleft()
        raise TimeoutError(errno.ETIMEDOUT, f"no watch event within {timeout:g} s")

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self.next()

    def close(self) -> None:
        """End the watch (the cancel goes out without waiting)."""
        if not self._done and self._conn is not None:
            self._client._send_cancel(self._conn, self._msgid)
        self._done = True
        self._events.clear()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    @property
    def closed(self) -> bool:
        return self._done

    async def __aenter__(self) -> AsyncWatch:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
