"""The trio server: AF_UNIX SOCK_SEQPACKET, msgpack-RPC frames, fds back via SCM_RIGHTS.

The I/O shell around :class:`~beneathd.protocol.connection.ServerConnection` (which owns
frames, request validation, the read-only rule, the fd rule and the reply encoding): this
module owns sockets, tasks, threads, timeouts and backpressure.

One task per connection reads datagrams.  It drains every ready datagram with
non-blocking ``recvmsg`` on the socket before waiting (at most ``_BURST`` per wakeup, then
a checkpoint, so that one busy client cannot starve the others).  Small operations run
inline, synchronously, and their reply goes out at once with a non-blocking ``sendmsg``
(only a full socket buffer falls back to an awaited send under the slow-peer timeout).
Long ones (``Method.is_long``) run in their own task, in a bounded pool of worker threads,
so replies may go out of order.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket as _stdsocket
import struct
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

import msgpack

from ..protocol.batch import gc_paused
from ..protocol.codec import (
    MAX_FRAME,
    MAX_MESSAGE,
    Limits,
    ProtocolError,
    Request,
    encode_result,
    error_reply,
    parse_batched,
)
from ..protocol.connection import (
    CLOSED,
    Cancel,
    More,
    Reject,
    ServerConnection,
    close_fds,
    fd_ancillary,
    fds_of,
    refusal,
)
from ..protocol.errors import EscapeError
from ..protocol.methods import API, ROOT_API, call_mutates
from .auth import PeerCred, Policy, peer_cred
from .escapes import EscapeLog
from .root import PROGRESS_INTERVAL, Job, fd_limit, name_fd_limit
from .watch import WatchBudget

__all__ = ["ServerConfig", "Server", "serve"]

_ANC_FDS = 16
_ANC_SPACE = _stdsocket.CMSG_SPACE(_ANC_FDS * array.array("i").itemsize)
#: fds a peer sends are closed at once; until then they are close-on-exec
_CLOEXEC = int(_stdsocket.MSG_CMSG_CLOEXEC)
#: datagrams handled per wakeup of a connection before it lets other tasks run
_BURST = 64
#: a stream (walk) sends this many pages ahead of the client's "more" notifications
STREAM_CREDIT = 4
#: a walk page holds at most this many tuples, or about this many bytes of names; the
#: first page holds one tuple (the caller starts at once), each next one twice as many
PAGE_TUPLES = 512
PAGE_BYTES = 256 * 1024
#: listings (listdir, scandir) of directories whose st_size is at most this run inline
_LISTINGS = frozenset({"names", "entries"})
_SMALL_DIR = 16 * 1024
#: a watch page holds at most this many events
WATCH_PAGE = 512
#: an inline batch lets other connections run after this many seconds of its calls (a
#: checkpoint costs ~3-15 us: at most ~15 % of the batch's time)
_BATCH_SLICE = 100e-6
#: a packed listing of this many bytes or more (or too big for a message) goes in a memfd
#: passed with the reply (PROTOCOL.md "Listings"): no message limit for scandir, and one
#: read instead of frames
PACKED_FD_FROM = 1 << 20


def _unread(sock: _stdsocket.socket) -> int:
    """Bytes sent on ``sock`` that its peer has not read yet."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except OSError:
        return 0  # (closed: nothing more will be read)


def packed_to_fd(parts: tuple[bytes, ...]) -> int:
    """A sealed memfd holding ``parts`` one after the other (the caller sends and closes it)."""
    fd = os.memfd_create("beneathd-listing", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Stream:
    """The pacing of one streamed call: pages it may still send before the client takes one."""

    __slots__ = ("credit", "changed")

    def __init__(self) -> None:
        self.credit = STREAM_CREDIT
        self.changed = trio.Event()

    def poke(self) -> None:
        ev, self.changed = self.changed, trio.Event()
        ev.set()


def _walk_page(gen: Any, most: int, job: Any = None) -> tuple[list[Any], bool]:
    """The next page of a walk (run in a worker thread): (tuples, the walk is over). A
    cancel ends the page at the next directory (the sender then stops the walk), so a walk
    stops within one directory's listing of its cancel, not one page's."""
    page: list[Any] = []
    size = 0
    for _ in range(most):
        if job is not None and job.cancelled:
            break
        try:
            dirpath, dirnames, filenames = next(gen)
        except StopIteration:
            return page, True
        page.append([dirpath, dirnames, filenames])
        size += len(dirpath) + sum(map(len, dirnames)) + sum(map(len, filenames)) + 2 * (len(dirnames) + len(filenames))
        if size >= PAGE_BYTES:
            break
    return page, False


def _pack_slot(slot: list[Any]) -> bytes:
    return msgpack.packb(slot, use_bin_type=True)  # type: ignore[no-any-return]


_NIL = b"\xc0"  # a slot of a call not run


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


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
    #: bytes of replies built for long requests but not yet taken by the peer, per
    #: connection; further long requests of that peer wait (a peer that never reads cannot
    #: make the daemon build and hold its replies)
    max_reply_bytes: int = 4 * 1024 * 1024
    #: protocol faults tolerated on one connection before it is closed
    max_faults: int = 16
    #: atomic writers (open(..., atomic=True)) a connection may hold unpublished at once
    max_writers: int = 64
    #: directories watched at once (every watch's tree, and the directories above each
    #: top), in the whole daemon and per connection (``--max-watches``); more: ENOSPC
    max_watches: int = 65536
    max_watches_per_connection: int = 16384
    #: watches one connection may have running (each is an inotify instance, of which a
    #: user has fs.inotify.max_user_instances, 128 by default)
    max_watch_streams: int = 32
    log: Callable[[str], None] = _stderr_log
    #: a refused escape is logged once per (peer, path) in this many seconds, then the
    #: count of the others (daemon/escapes.py; ``--escape-log-window``)
    escape_log_window: float = 60.0
    #: the clock of those windows (tests move it on instead of sleeping)
    clock: Callable[[], float] = time.monotonic


class _Conn:
    def __init__(self, sock: _stdsocket.socket, peer: PeerCred, proto: ServerConnection) -> None:
        #: the stdlib socket, non-blocking (waited on with trio.lowlevel.wait_*)
        self.sock = sock
        self.peer = peer
        #: the protocol state (sans-I/O)
        self.proto = proto
        self.send_lock = trio.Lock()
        self.inflight = 0
        self.inflight_bytes = 0
        self.bytes_changed = trio.Event()
        #: bytes of long replies built and not yet sent (bounded by max_reply_bytes)
        self.reply_bytes = 0
        self.reply_sent = trio.Event()
        #: long requests of this connection being checked against the budget and built
        self.building = trio.Semaphore(2)
        #: msgid -> the Job of each call that can be stopped (cancel, disconnect)
        self.jobs: dict[int, Job] = {}
        #: handle -> an atomic writer this peer holds (discarded when it leaves)
        self.writers: dict[int, Any] = {}
        #: msgid -> the pacing of each streamed call
        self.streams: dict[int, _Stream] = {}
        #: watches running (in ``inflight`` too: a watching connection is not idle)
        self.watching = 0
        #: directories this connection's watches hold (made at its first watch)
        self.watch_budget: WatchBudget | None = None
        self.cancel: trio.CancelScope | None = None
        self.dead = False
        # Read timeouts (idle, partial message) are kept by a watchdog task, not by a
        # cancel scope around every wait (a CancelScope costs ~7-10 us here, per request).
        #: trio.current_time() when the reader last started waiting for a datagram
        self.wait_since = trio.current_time()
        #: the reader is in wait_readable
        self.waiting = False
        #: the timeout the watchdog applies now (None: none; the reader re-arms it on change)
        self.wd_limit: float | None = None
        self.rearm = trio.Event()
        #: set by the watchdog: why the reader was stopped
        self.timed_out: str | None = None
        self.read_scope: trio.CancelScope | None = None


class Server:
    """Serves one ``Root`` on one listening socket (a stdlib or trio socket)."""

    def __init__(self, root: Any, listener: Any, config: ServerConfig | None = None) -> None:
        self.root = root
        if isinstance(listener, _stdsocket.socket):
            listener.setblocking(False)
            listener = trio.socket.from_stdlib_socket(listener)
        self.listener = listener
        self.cfg = config or ServerConfig()
        #: the readers' receive buffer (recvmsg_into: recvmsg would allocate a frame's
        #: 200 KiB per datagram, ~20 us); one for all, as no reader awaits while it holds data
        self._rbuf = memoryview(bytearray(self.cfg.max_frame + 1))
        self.limits = Limits.for_requests(self.cfg.max_message)
        self.limiter = trio.CapacityLimiter(self.cfg.worker_threads)
        #: connections open now
        self.connections = 0
        self.last_activity = time.monotonic()
        # The counters of ``stats`` (and of systemd's STATUS= line). The loop's are plain
        # ints bumped on the loop alone (one increment per request: this daemon is measured
        # per request); worker threads add theirs to ``_threads_counted`` under a lock.
        #: calls answered: every request, but a batch counts its calls (those it ran) instead
        self.calls = 0
        #: calls answered with an error (a cancelled call is not one)
        self.errors = 0
        #: calls refused because a path escaped the root (each is logged, rate-limited)
        self.escapes = 0
        #: connections accepted and served since the start; peers refused (policy, limit)
        self.accepted = 0
        self.refused = 0
        self._threads_counted = [0, 0, 0]  # calls, errors, escapes
        self._threads_lock = threading.Lock()
        self.escape_log = EscapeLog(self.cfg.log, self.cfg.escape_log_window, self.cfg.clock)
        self._next_writer = 1
        #: an fd given up to refuse a connection when the daemon is out of them (serve)
        self._spare: int | None = None
        #: directories all watches of the daemon hold
        self.watch_budget = WatchBudget(self.cfg.max_watches, "this daemon (--max-watches)")
        #: method name -> the bound Root method (requests carry every parameter by name),
        #: or the server's own for what the daemon answers itself (``Method.daemon``: stats)
        self._ops: dict[str, Callable[..., Any]] = {
            name: getattr(root, name) for name, m in ROOT_API.items() if not m.returns_fd}
        self._ops.update({name: getattr(self, name) for name, m in API.items() if m.daemon})

    # -- the counters --------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The counters (the ``stats`` method's result, and the STATUS= line's figures)."""
        with self._threads_lock:
            calls, errors, escapes = self._threads_counted
        return {"calls": self.calls + calls, "errors": self.errors + errors, "escapes": self.escapes + escapes,
                "connections": self.connections, "connections_total": self.accepted,
                "peers_refused": self.refused}

    def _count_in_thread(self, calls: int = 0, errors: int = 0, escapes: int = 0) -> None:
        with self._threads_lock:
            c = self._threads_counted
            c[0] += calls
            c[1] += errors
            c[2] += escapes

    def _count_error(self, threaded: bool) -> None:
        if threaded:
            self._count_in_thread(errors=1)
        else:
            self.errors += 1

    def _failed(self, conn: _Conn, what: str, e: Exception, threaded: bool = False, where: str = "") -> None:
        """A call (``what``: its method's name; ``where``: a prefix for the internal-error
        line) ends in ``e``: count it as an error (unless it was cancelled), log a refused
        escape (daemon/escapes.py) and an internal error."""
        escape = False
        if isinstance(e, EscapeError):
            escape = True
            self.escape_log.refused(conn.peer, what, e)
        error = not (isinstance(e, OSError) and e.errno == errno.ECANCELED)
        if threaded:
            self._count_in_thread(errors=error, escapes=escape)
        else:
            self.errors += error
            self.escapes += escape
        self._note_internal(where + what, e)

    # -- accepting ---------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # Out of fds, accept fails with EMFILE at once (it takes the fd number before it
        # looks at the backlog, so retrying would spin, waiting or not), and a peer would
        # wait unanswered in the backlog. So one spare fd is held: out of fds, it is given
        # up, one waiting connection accepted into it, told EMFILE naming the limit and
        # closed, and the spare taken again (libev's and nginx's way); with none waiting the
        # loop sleeps until one comes (see _shed). Out of kernel memory or of the system's
        # files (ENFILE: a spare, a dup of the listener, frees no file), it pauses 100 ms
        # between tries. Either way an episode is logged once, at its start and its end.
        self._spare = self._take_spare()
        short, refused = False, 0
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flush_escapes)
                task_status.started()
                while True:
                    try:
                        sock, _ = await self.listener.accept()
                    except OSError as e:
                        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            if not short:
                                self.cfg.log(f"beneathd: accept: {e.strerror} (RLIMIT_NOFILE {fd_limit()}); "
                                             "refusing new connections until fds are freed"
                                             if e.errno == errno.EMFILE else f"beneathd: accept: {e.strerror}; pausing")
                                short = True
                            if e.errno == errno.EMFILE:
                                refused += await self._shed(e.errno)
                            else:
                                await trio.sleep(0.1)
                            continue
                        if e.errno in (errno.ECONNABORTED, errno.EINTR, errno.EPROTO):
                            continue
                        raise
                    if short:
                        self.cfg.log(f"beneathd: accept: accepting again; {refused} connections were refused "
                                     "meanwhile")
                        short, refused = False, 0
                    nursery.start_soon(self._connection, sock)
        finally:
            if self._spare is not None:
                os.close(self._spare)
                self._spare = None

    def _take_spare(self) -> int | None:
        try:
            return os.dup(self.listener.fileno())
        except OSError:
            return None

    async def _shed(self, err: int) -> int:
        """Out of fds: give up the spare fd, accept one waiting connection into it and
        refuse it (1); with none waiting, take the spare back and wait until one comes (0:
        fds freed meanwhile wake nothing, the next accept finds them). With no spare (its
        number was taken by a worker thread), wait 100 ms (0)."""
        if self._spare is None:
            self._spare = self._take_spare()
        if self._spare is None:
            await trio.sleep(0.1)
            return 0
        os.close(self._spare)
        self._spare = None
        listener = _stdsocket.socket(fileno=self.listener.fileno())  # the same fd, not owned
        sock: _stdsocket.socket | None = None
        try:
            sock = listener.accept()[0]
        except BlockingIOError:  # none waiting
            waiting = False
        except OSError:  # the number was taken meanwhile (EMFILE), or worse
            waiting = True
        finally:
            listener.detach()
        if sock is None:
            self._spare = self._take_spare()
            if waiting:
                await trio.sleep(0.1)
            else:
                await trio.lowlevel.wait_readable(self.listener)
            return 0
        try:
            sock.setblocking(False)
            sock.send(refusal(err, f"beneathd is out of file descriptors (its RLIMIT_NOFILE is {fd_limit()}); "
                                   "try again later"))
            sock.shutdown(_stdsocket.SHUT_WR)
            # the peer's first request, if it comes at once: read before closing, it does
            # not reset the connection (the peer reads the refusal) nor fail its send
            with trio.move_on_after(0.05):
                await trio.lowlevel.wait_readable(sock)
            for _ in range(64):
                if not sock.recv(self.cfg.max_frame + 1):
                    break
        except OSError:
            pass  # (BlockingIOError: all read)
        finally:
            trio.lowlevel.notify_closing(sock)
            sock.close()
            self._spare = self._take_spare()
        return 1

    async def _flush_escapes(self) -> None:
        """The escape log's windows close on time even if no escape comes to close them."""
        while True:
            await trio.sleep(min(5.0, max(self.cfg.escape_log_window, 0.1)))
            self.escape_log.flush()

    async def _refuse(self, sock: trio.socket.SocketType, err: int, message: str) -> None:
        with trio.move_on_after(1.0):
            try:
                await sock.sendmsg([refusal(err, message)])
                # Closing with unread requests queued would reset the connection and the
                # peer could lose the reply: say EOF, then drain briefly.
                sock.shutdown(_stdsocket.SHUT_WR)
            except OSError:
                return
        with trio.move_on_after(0.5):
            try:
                while True:
                    data, anc, flags, _ = await sock.recvmsg(self.cfg.max_frame + 1, _ANC_SPACE, _CLOEXEC)
                    close_fds(fds_of(anc))
                    if not data and not anc:
                        return
            except OSError:
                pass

    async def _connection(self, tsock: trio.socket.SocketType) -> None:
        with tsock:
            try:
                peer = peer_cred(tsock)  # type: ignore[arg-type]
            except OSError as e:
                self.cfg.log(f"beneathd: SO_PEERCRED failed: {e.strerror}")
                return
            access = self.cfg.policy.access(peer)
            if access is None:
                self.cfg.log(f"beneathd: refused peer {peer}: not allowed")
                self.refused += 1
                await self._refuse(tsock, errno.EACCES, f"peer uid {peer.uid} is not allowed by this daemon")
                return
            if self.connections >= self.cfg.max_connections:
                self.cfg.log(f"beneathd: refused peer {peer}: too many connections")
                self.refused += 1
                await self._refuse(tsock, errno.EAGAIN, "too many connections, try again later")
                return
            # From here on the connection is served on the stdlib socket directly
            # (non-blocking calls, trio.lowlevel.wait_* only when they would block).
            sock = _stdsocket.socket(tsock.family, tsock.type, tsock.proto, fileno=tsock.detach())
        with sock:
            sock.setblocking(False)
            self.connections += 1
            self.accepted += 1
            self.last_activity = time.monotonic()
            proto = ServerConnection(access, self.limits, max_frame=self.cfg.max_frame,
                                     max_faults=self.cfg.max_faults)
            conn = _Conn(sock, peer, proto)
            try:
                async with trio.open_nursery() as nursery:
                    conn.cancel = nursery.cancel_scope
                    wd_scope = trio.CancelScope()  # entered by the watchdog
                    nursery.start_soon(self._watchdog, conn, wd_scope)
                    try:
                        with trio.CancelScope() as conn.read_scope:
                            try:
                                await self._reader(conn, nursery)
                            finally:
                                self._stop_jobs(conn)  # a peer that leaves cancels its calls
                                self._drop_writers(conn)  # ... and publishes nothing
                        if conn.timed_out is not None:
                            self._fault(conn, f"{conn.timed_out}; closing")
                    finally:
                        wd_scope.cancel()
            except Exception as e:  # never let one client take the daemon down
                self.cfg.log(f"beneathd: peer {peer}: connection error: {type(e).__name__}: {e}")
            finally:
                self.connections -= 1
                self.last_activity = time.monotonic()
                # nothing waits on the socket any more (the nursery is done); tell trio anyway
                trio.lowlevel.notify_closing(sock)

    # -- reading -------------------------------------------------------------------------------

    def _fault(self, conn: _Conn, what: str) -> None:
        self.cfg.log(f"beneathd: peer {conn.peer}: {what}")

    def _read_limit(self, conn: _Conn) -> float | None:
        if conn.proto.receiving:
            return self.cfg.partial_timeout
        if conn.inflight == 0:
            return self.cfg.idle_timeout
        return None

    async def _watchdog(self, conn: _Conn, scope: trio.CancelScope) -> None:
        """Stop the reader when it has waited too long: ``idle_timeout`` with nothing in
        flight, ``partial_timeout`` with a message half received."""
        with scope:
            while True:
                conn.rearm = trio.Event()
                limit = conn.wd_limit = self._read_limit(conn)
                if limit is None:
                    await conn.rearm.wait()
                    continue
                deadline = conn.wait_since + limit
                now = trio.current_time()
                if now >= deadline:
                    if conn.waiting:
                        conn.timed_out = "message not completed in time" if conn.proto.receiving else "idle"
                        if conn.read_scope is not None:
                            conn.read_scope.cancel()
                        return
                    # busy (serving a burst): look again later; a new wait only moves it on
                    deadline = now + limit
                with trio.move_on_at(deadline):
                    await conn.rearm.wait()

    async def _reader(self, conn: _Conn, nursery: trio.Nursery) -> None:
        """Read and serve requests until EOF, a fatal fault, a timeout or the connection dies.

        Every ready datagram is drained with non-blocking ``recvmsg`` (``_BURST`` per wakeup,
        then a checkpoint) and handed to the connection's protocol state; small requests are
        served inline (:meth:`_call`), long ones in their own task (:meth:`_request`).  The
        reader stops reading while ``max_inflight`` long requests or ``max_inflight_bytes`` of
        their payload are in flight (backpressure), and while an inline reply waits for the
        peer to read.
        """
        cfg = self.cfg
        proto = conn.proto
        receive = proto.receive
        notes = proto.notes
        current_time = trio.current_time
        sock = conn.sock
        recvmsg_into = sock.recvmsg_into
        view = self._rbuf  # one for the whole server: filled and copied out with no await between
        bufs = [view]
        max_inflight = cfg.max_inflight
        max_bytes = cfg.max_inflight_bytes
        wait_readable = trio.lowlevel.wait_readable
        call = self._call
        try_send = self._try_send
        monotonic = time.monotonic
        budget = _BURST
        while not conn.dead:
            if conn.inflight - conn.watching >= max_inflight or conn.inflight_bytes > max_bytes:
                # backpressure: let long requests finish before reading more (watches run
                # until cancelled, and their cancels must be read: they do not count here)
                while not conn.dead and (conn.inflight - conn.watching >= max_inflight
                                         or conn.inflight_bytes > max_bytes):
                    conn.bytes_changed = trio.Event()
                    await conn.bytes_changed.wait()
                budget = _BURST
                continue
            try:
                n, anc, flags, _ = recvmsg_into(bufs, _ANC_SPACE, _CLOEXEC)
                data = view[:n].tobytes()
            except BlockingIOError:
                budget = _BURST
                conn.wait_since = current_time()
                if proto.receiving:
                    limit: float | None = cfg.partial_timeout
                elif conn.inflight == 0:
                    limit = cfg.idle_timeout
                else:
                    limit = None
                if limit != conn.wd_limit:
                    conn.rearm.set()  # the watchdog re-reads the limit
                conn.waiting = True
                try:
                    await wait_readable(sock)
                finally:
                    conn.waiting = False
                continue
            except OSError as e:
                if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                    self._fault(conn, f"recvmsg: {e.strerror}")
                return
            budget -= 1
            if budget <= 0:
                budget = _BURST
                await trio.lowlevel.checkpoint()
            ev = receive(data, anc, flags)
            if notes:
                for what in notes:
                    self._fault(conn, what)
                notes.clear()
            if ev is None:
                continue
            if ev.__class__ is Request:
                req: Request = ev  # type: ignore[assignment]
                self.calls += 1  # (a batch's calls replace it: _inline_batch, _batch_payload)
                m = req.method
                if m.long and m.is_long(req.args) and not (m.result in _LISTINGS and self._small_dir(req)):
                    conn.inflight += 1
                    conn.inflight_bytes += req.size
                    if m.reports_progress or m.streams:
                        conn.jobs[req.msgid] = Job()
                    if m.streams:
                        conn.streams[req.msgid] = _Stream()
                    serve = self._request if not m.streams else (
                        self._watch_request if m.result == "watch" else self._stream_request)
                    nursery.start_soon(serve, conn, req)
                elif m.result == "batch":
                    await self._inline_batch(conn, req)
                elif req.progress:
                    await self._inline_with_progress(conn, req)
                else:
                    payload, fd = call(conn, req)
                    # the common case without a coroutine: one frame, no fd, sent at once
                    if fd is not None or not try_send(conn, payload, None):
                        await self._reply(conn, payload, fd)
                self.last_activity = monotonic()
            elif ev.__class__ is Cancel:
                job = conn.jobs.get(ev.msgid)  # type: ignore[union-attr]
                if job is not None:
                    job.cancel()
                st = conn.streams.get(ev.msgid)  # type: ignore[union-attr]
                if st is not None:
                    st.poke()
            elif ev.__class__ is More:
                st = conn.streams.get(ev.msgid)  # type: ignore[union-attr]
                if st is not None:
                    st.credit += 1
                    st.poke()
            elif ev is CLOSED:
                return
            else:
                assert isinstance(ev, Reject)
                self.calls += 1  # a request refused (malformed, or a read-only peer's write)
                self.errors += 1
                await self._reply(conn, ev.reply)
                if ev.fatal:
                    return
                self.last_activity = monotonic()
        return

    # -- serving one request -------------------------------------------------------------------

    def _call(self, conn: _Conn, req: Request, threadsafe: bool = False,
              job: Job | None = None) -> tuple[bytes, int | None]:
        """Run the method and encode the reply (on the loop, or in a worker thread with
        ``threadsafe``)."""
        m = req.method
        a = req.args
        fd: int | None = None
        try:
            if job is not None:
                if job.cancelled:  # before it started (waiting for a worker, or its budget)
                    raise OSError(errno.ECANCELED, "cancelled")
                result = self._ops[m.name](**a, job=job)
            elif m.returns_fd:
                mode = a["mode"].replace("t", "")
                if "b" not in mode:
                    mode += "b"
                if a["atomic"]:
                    result = self._open_writer(conn, a["path"], mode, a["perms"])
                    try:
                        fd = os.dup(conn.writers[result].fileno())
                    except BaseException:
                        conn.writers.pop(result).discard()
                        raise
                else:
                    f = self.root.open(a["path"], mode, buffering=0, perms=a["perms"])
                    fd = os.dup(f.fileno())
                    f.close()
                    result = None
            elif m.result == "batch":  # (in a worker thread: one of its calls may be long)
                return self._batch_payload(conn, req, job), None
            elif m.internal:
                w = conn.writers.pop(a["handle"], None)
                if w is None:
                    raise OSError(errno.EBADF, f"no atomic writer {a['handle']} on this connection")
                result = w.close() if m.name == "writer_publish" else w.discard()
            elif req.packed:
                result = self.root._scandir_packed(**a)
                size = sum(map(len, result))
                if size >= PACKED_FD_FROM or size + 64 > conn.proto.max_message:
                    fd = packed_to_fd(result)
                    result = [len(part) for part in result]
            else:
                result = self._ops[m.name](**a)
            return conn.proto.reply(req, result, threadsafe=threadsafe), fd
        except Exception as e:
            if fd is not None:
                os.close(fd)
            self._failed(conn, m.name, e, threadsafe)
            return conn.proto.error(req, name_fd_limit(e, a.get("path")), threadsafe=threadsafe), None

    def _small_dir(self, req: Request) -> bool:
        """A listing of a small directory runs inline: a worker thread's hop costs ~0.7 ms
        of CPU, ten times the listing of a few hundred names. Small: its st_size (what the
        file system says of the directory's own size: ext4 4 KiB blocks of entries, tmpfs
        ~20 bytes a name) at most ``_SMALL_DIR``. Only a scheduling guess: a directory
        swapped for a big one meanwhile is listed inline once (the project's own daemon
        waits for it; nothing else changes)."""
        try:
            return self.root.stat(req.args["path"]).st_size <= _SMALL_DIR  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return True  # the listing fails the same way, at once

    # -- batches -------------------------------------------------------------------------------

    def _batch_one(self, conn: _Conn, c: Any, threaded: bool = False) -> bytes:
        """One call of a batch (``[method, params]``) run, as its packed slot:
        ``[nil, result]`` or ``[error, nil]`` (counted as an error; the caller counts the call)."""
        try:
            r = parse_batched(c)
        except ProtocolError as e:
            self._count_error(threaded)
            return _pack_slot([e.to_wire(), None])
        m = r.method
        if conn.proto.access != "rw" and call_mutates(m, r.args):
            self._count_error(threaded)
            return _pack_slot([{"errno": errno.EACCES, "code": "EACCES",
                                "message": f"read-only peer may not call {m.name}", "paths": []}, None])
        try:
            return _pack_slot([None, encode_result(m, self._ops[m.name](**r.args))])
        except Exception as e:
            self._failed(conn, m.name, e, threaded, "batch: ")
            return _pack_slot([error_reply(e, m, r.args), None])

    def _batch_payload(self, conn: _Conn, req: Request, job: Job | None = None) -> bytes:
        """A batch run whole (in a worker thread): its reply; a cancel stops it between calls."""
        stop = req.args["stop_on_error"]
        slots: list[bytes] = []
        failed = False
        ran = 0
        with gc_paused():
            for c in req.args["calls"]:
                if failed or (job is not None and job.cancelled):
                    slots.append(_NIL)
                    continue
                slot = self._batch_one(conn, c, True)
                ran += 1
                slots.append(slot)
                failed = stop and slot[1:2] != _NIL
            self._count_in_thread(calls=ran - 1)  # its calls, in place of the batch the reader counted
            return self._batch_reply(conn, req, slots)

    async def _inline_batch(self, conn: _Conn, req: Request) -> None:
        """A batch of small calls, on the loop: each call parsed, run and packed as its
        turn comes, letting other connections run every ``_BATCH_SLICE`` seconds of it (a
        100k-call batch never holds the loop for longer than that). By time, not by count:
        a call costs 7 us on a quiet machine and 30 us on a loaded one."""
        stop = req.args["stop_on_error"]
        slots: list[bytes] = []
        append = slots.append
        failed = False
        one = self._batch_one
        calls = req.args["calls"]
        n = len(calls)
        clock = time.perf_counter
        i = ran = 0
        while i < n:
            end = clock() + _BATCH_SLICE
            with gc_paused():  # (not across the checkpoint: other tasks run with it on)
                while i < n:
                    if failed:
                        append(_NIL)
                    else:
                        slot = one(conn, calls[i])
                        ran += 1
                        append(slot)
                        failed = stop and slot[1:2] != _NIL
                    i += 1
                    if not i & 3 and clock() >= end:  # (the clock every 4 calls: ~60 ns)
                        break
            await trio.lowlevel.checkpoint()
        self.calls += ran - 1  # its calls, in place of the batch the reader counted
        await self._reply(conn, self._batch_reply(conn, req, slots))

    def _batch_reply(self, conn: _Conn, req: Request, slots: list[bytes]) -> bytes:
        """The reply of packed slots; if it would exceed the message limit, the biggest
        results become ``EFBIG`` errors in their slots (their calls ran) until it fits."""
        limit = conn.proto.max_message - 64
        total = sum(map(len, slots))
        if total > limit:
            for i in sorted(range(len(slots)), key=lambda k: len(slots[k]), reverse=True):
                if total <= limit:
                    break
                n = len(slots[i])
                slots[i] = _pack_slot([{"errno": errno.EFBIG, "code": "EFBIG", "paths": [],
                                        "message": f"result of {n} bytes does not fit the batch's reply (the message "
                                                   f"limit is {conn.proto.max_message}); call it on its own, or use "
                                                   "open()"}, None])
                total += len(slots[i]) - n
        head = msgpack.packb([1, req.msgid, None], use_bin_type=True)
        # [1, msgid, nil, [slot, ...]]: the 3-array header becomes a 4-array, then the slots' array
        return b"\x94" + head[1:] + _array_header(len(slots)) + b"".join(slots)

    def _note_internal(self, what: str, e: Exception) -> None:
        """Log what a call raised that is not a caller's error (OSError, ValueError,
        TypeError are: the reply carries them); the reply carries it too."""
        if not isinstance(e, (OSError, ValueError, TypeError)):
            self.cfg.log(f"beneathd: {what}: internal error: {type(e).__name__}: {e}")

    def _open_writer(self, conn: _Conn, path: bytes, mode: str, perms: int) -> int:
        if len(conn.writers) >= self.cfg.max_writers:
            raise OSError(errno.EMFILE, f"too many atomic writers open on this connection "
                                        f"(the limit is {self.cfg.max_writers})")
        w = self.root.open(path, mode, buffering=0, perms=perms, atomic=True)
        # handles are never reused in a daemon's life: a client that reconnected and
        # publishes on the new connection finds nothing (EBADF) rather than another writer
        handle = self._next_writer
        self._next_writer += 1
        conn.writers[handle] = w
        return handle

    @staticmethod
    def _drop_writers(conn: _Conn) -> None:
        writers, conn.writers = conn.writers, {}
        for w in writers.values():
            w.discard()

    async def _inline_with_progress(self, conn: _Conn, req: Request) -> None:
        """A short call that was asked for progress (``rm`` of one name): its one
        ``progress`` message (the totals), then its reply."""
        job = Job()
        payload, _ = self._call(conn, req, job=job)
        await self._reply(conn, conn.proto.progress(req.msgid, *job.progress))
        await self._reply(conn, payload)

    async def _ticker(self, conn: _Conn, req: Request, job: Job) -> None:
        """``progress`` messages of a running call, at most every 100 ms; one that would
        have to wait for the peer is left out (the next one says more)."""
        last = None
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            p = job.progress
            if p != last:
                last = p
                self._try_send(conn, conn.proto.progress(req.msgid, *p), None)

    async def _stream_request(self, conn: _Conn, req: Request) -> None:
        """A streamed call (walk), in its own task: a producer makes and encodes the pages
        in a worker thread, one page ahead of the sender, which sends each as the client's
        credit allows (a client that reads slowly holds a suspended generator, not a
        thread), then the final response."""
        job = conn.jobs[req.msgid]
        st = conn.streams[req.msgid]
        gen: Any = None
        outcome: list[bytes] = []  # the final response, once the producer knows it
        proto = conn.proto

        def page_of(most: int) -> tuple[bytes | None, bool]:
            page, done = _walk_page(gen, most, job)
            return (proto.partial(req.msgid, "walk", page, threadsafe=True) if page else None), done

        async def produce(send: Any) -> None:
            async with send:
                try:
                    most = 1
                    while True:
                        if job.cancelled:
                            raise OSError(errno.ECANCELED, "cancelled")
                        payload, done = await trio.to_thread.run_sync(page_of, most, limiter=self.limiter)
                        most = min(most * 2, PAGE_TUPLES)
                        if payload is not None:
                            await send.send(payload)
                        if done:
                            outcome.append(proto.reply(req, None))
                            return
                except Exception as e:
                    self._failed(conn, req.method.name, e)
                    outcome.append(proto.error(req, e))

        try:
            try:
                gen = self._ops[req.method.name](**req.args)
                send, pages = trio.open_memory_channel[bytes](1)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce, send)
                    async with pages:
                        async for payload in pages:
                            while st.credit <= 0 and not job.cancelled and not conn.dead:
                                await st.changed.wait()
                            if job.cancelled or conn.dead:
                                job.cancel()  # the producer stops at its next page
                                continue
                            st.credit -= 1
                            await self._send(conn, payload)
                if job.cancelled:
                    outcome[:] = [proto.error(req, OSError(errno.ECANCELED, "cancelled"))]
            finally:
                if gen is not None:
                    gen.close()  # its directory fds
            await self._send(conn, outcome[0])
        finally:
            conn.jobs.pop(req.msgid, None)
            conn.streams.pop(req.msgid, None)
            self._long_done(conn, req.size)

    async def _watch_request(self, conn: _Conn, req: Request) -> None:
        """A watch, in its own task: set up in a worker thread (a big tree takes a while),
        then read on the loop whenever inotify is readable (the tree must be followed even
        while the client does not read; what waits for it is bounded by ``max_queue``),
        sending events in pages as the client's credit allows. The first page is empty:
        the watch is in place. Ends with the connection or the client's cancel."""
        job = conn.jobs[req.msgid]
        st = conn.streams[req.msgid]
        proto = conn.proto
        w: Any = None
        final: bytes | None = None
        conn.watching += 1
        conn.bytes_changed.set()  # the reader may be waiting for room that this watch gives back
        try:
            if conn.watching > self.cfg.max_watch_streams:
                err = OSError(errno.EMFILE, f"too many watches on this connection (the limit is "
                                            f"{self.cfg.max_watch_streams})")
                self._failed(conn, "watch", err)
                final = proto.error(req, err)
                return
            if conn.watch_budget is None:
                conn.watch_budget = WatchBudget(self.cfg.max_watches_per_connection,
                                                "one connection (--max-watches-per-connection)", self.watch_budget)
            budget = conn.watch_budget
            try:
                w = await trio.to_thread.run_sync(
                    lambda: self.root.watch(**req.args, budget=budget, job=job), limiter=self.limiter)
            except Exception as e:
                self._failed(conn, "watch", e)
                final = proto.error(req, e)
                return
            st.credit -= 1
            await self._send(conn, proto.partial(req.msgid, "watch", []))

            async def reader() -> None:
                fd = w.fileno()
                while not w.ended:
                    await trio.lowlevel.wait_readable(fd)
                    while w.read():  # 256 KiB of events at a time, then the others' turn
                        st.poke()
                        await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                while not job.cancelled and not conn.dead:
                    if w.waiting and st.credit > 0:
                        st.credit -= 1
                        page = [list(ev) for ev in w.take(WATCH_PAGE)]
                        await self._send(conn, proto.partial(req.msgid, "watch", page))
                    elif w.ended and not w.waiting:
                        break
                    else:
                        await st.changed.wait()
                nursery.cancel_scope.cancel()
            if job.cancelled:
                final = proto.error(req, OSError(errno.ECANCELED, "cancelled"))
            elif w.error is not None:
                self._failed(conn, "watch", w.error)
                final = proto.error(req, w.error)
            else:
                final = proto.reply(req, None)
        finally:
            conn.watching -= 1
            if w is not None:
                fd = w.fileno()
                if fd >= 0:
                    trio.lowlevel.notify_closing(fd)
                w.close()
            conn.jobs.pop(req.msgid, None)
            conn.streams.pop(req.msgid, None)
            self._long_done(conn, req.size)
            if final is not None and not conn.dead:
                with trio.CancelScope(shield=True):
                    await self._send(conn, final)

    async def _request(self, conn: _Conn, req: Request) -> None:
        """A long request, in its own task: the work runs in a worker thread."""
        fd: int | None = None
        built = 0
        listing = False
        size = req.size
        job = conn.jobs.get(req.msgid)
        try:
            async with conn.building:  # the budget check and the build, two at a time
                while conn.reply_bytes >= self.cfg.max_reply_bytes and not conn.dead:
                    conn.reply_sent = trio.Event()
                    await conn.reply_sent.wait()  # the peer has not taken earlier replies yet
                if conn.dead:
                    return
                async with trio.open_nursery() as ticking:
                    if req.progress and job is not None:
                        ticking.start_soon(self._ticker, conn, req, job)
                    payload, fd = await trio.to_thread.run_sync(self._call, conn, req, True, job,
                                                                 limiter=self.limiter)
                    ticking.cancel_scope.cancel()
                built = len(payload)
                listing = fd is not None and req.packed  # a memfd: its bytes count too
                if listing:
                    built += os.fstat(fd).st_size  # type: ignore[arg-type]
                conn.reply_bytes += built
            conn.inflight_bytes -= size
            size = 0
            conn.bytes_changed.set()
            if req.progress and job is not None:
                await self._send(conn, conn.proto.progress(req.msgid, *job.progress))
            await self._send(conn, payload, fd)
            if listing:
                # Sent, the memfd lives on in the peer's queue (its pages charged to this
                # daemon) until the peer reads it: it stays in the budget until then.
                await self._taken(conn)
        finally:
            if job is not None and conn.jobs.get(req.msgid) is job:
                del conn.jobs[req.msgid]
            conn.reply_bytes -= built
            conn.reply_sent.set()
            if fd is not None:
                os.close(fd)
            self._long_done(conn, size)

    async def _taken(self, conn: _Conn) -> None:
        """Wait until the peer has read all that was sent to it (``SIOCOUTQ`` 0), at most
        ``send_timeout``: a peer that does not read its replies is dropped."""
        delay = 0.001
        with trio.move_on_after(self.cfg.send_timeout) as cs:
            while not conn.dead and _unread(conn.sock):
                await trio.sleep(delay)
                delay = min(delay * 2, 0.05)
        if cs.cancelled_caught and not conn.dead:
            self._drop_slow(conn)

    def _long_done(self, conn: _Conn, size: int) -> None:
        """A long call's task ends: it no longer counts in flight (the reader may read on),
        with ``size`` bytes of its request still held."""
        conn.inflight -= 1
        conn.inflight_bytes -= size
        conn.bytes_changed.set()
        self.last_activity = time.monotonic()
        if conn.inflight == 0:
            # the idle countdown of a waiting reader starts now
            conn.wait_since = max(conn.wait_since, trio.current_time())
            conn.rearm.set()

    # -- replying ------------------------------------------------------------------------------

    def _try_send(self, conn: _Conn, payload: bytes, fd: int | None) -> bool:
        """Send a one-frame reply now without blocking; False if it must wait (or is long)."""
        if conn.send_lock.locked():
            return False
        datagrams = conn.proto.datagrams(payload)
        if len(datagrams) != 1:
            return False
        try:
            if fd is None:
                conn.sock.sendmsg(datagrams[0])
            else:
                conn.sock.sendmsg(datagrams[0], fd_ancillary(fd))
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self._fault(conn, f"sendmsg: {e.strerror}")
            self._kill(conn)
        return True

    async def _reply(self, conn: _Conn, payload: bytes, fd: int | None = None) -> None:
        """Send a reply from the reader: at once if the socket takes it, else wait (bounded)."""
        try:
            if conn.dead or self._try_send(conn, payload, fd):
                return
            await self._send(conn, payload, fd)
        finally:
            if fd is not None:
                os.close(fd)

    async def _send(self, conn: _Conn, payload: bytes, fd: int | None = None) -> None:
        """Send all frames of a reply under the send lock; a peer not taking it within
        ``send_timeout`` is dropped."""
        if conn.dead:
            return
        datagrams = conn.proto.datagrams(payload)
        anc = fd_ancillary(fd)
        sock = conn.sock
        async with conn.send_lock:
            with trio.move_on_after(self.cfg.send_timeout) as cs:
                try:
                    for i, bufs in enumerate(datagrams):
                        while True:
                            try:
                                sock.sendmsg(bufs, anc if i == 0 else [])
                                break
                            except BlockingIOError:
                                await trio.lowlevel.wait_writable(sock)
                except OSError as e:
                    if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                        self._fault(conn, f"sendmsg: {e.strerror}")
                    self._kill(conn)
                    return
            if cs.cancelled_caught:
                self._drop_slow(conn)

    def _drop_slow(self, conn: _Conn) -> None:
        """A peer that has not taken its replies within ``send_timeout``."""
        self._fault(conn, "does not read its replies; dropped")
        self._kill(conn)

    def _kill(self, conn: _Conn) -> None:
        conn.dead = True
        self._stop_jobs(conn)
        if conn.cancel is not None:
            conn.cancel.cancel()

    @staticmethod
    def _stop_jobs(conn: _Conn) -> None:
        for job in conn.jobs.values():
            job.cancel()
        for st in conn.streams.values():
            st.poke()


async def serve(root: Any, listener: Any, config: ServerConfig | None = None,
                *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``root`` on ``listener`` until cancelled."""
    await Server(root, listener, config).serve(task_status=task_status)
