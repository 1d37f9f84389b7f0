"""The two ends of a connection, sans-I/O: datagrams (and their fds) in, events out.

The model is python-hyper/h11's ``Connection``: an object that owns the protocol state of
one connection (msgids, envelopes, frames and their reassembly, the fd rules, the limits)
and never touches a socket, so that the daemon (trio) and both clients (threads, trio)
are thin shells around the same logic, and a test can drive either end with bytes alone.

A shell's loop is::

    data, ancdata, flags, _ = sock.recvmsg(...)      # the shell's only job: I/O
    event = conn.receive(data, ancdata, flags)         # the protocol's: what it means
    for bufs in conn.datagrams(payload): sock.sendmsg(bufs, ...)

The one system call made here is ``close()`` on fds the rules say to drop (a daemon closes
every fd a peer sends; a client closes the fds of a reply nobody waits for any more), so
that the rule lives in one place.

**Version 2** (PROTOCOL.md).  A request may carry call options as a fifth element
(``{"progress": true}``).  A call then has zero or more intermediate messages for its
msgid before its one final response (``[3, msgid, kind, data]``, a :class:`Partial`: kind
``"progress"`` carries ``[entries, bytes]``); the client end files each message under its
msgid and :meth:`ClientConnection.take` hands them out in order, the final :class:`Reply`
last.  A client stops a call of its own with the notification ``[2, "cancel", [msgid]]``
(:meth:`ClientConnection.cancel`; a :class:`Cancel` event at the daemon's end).  A client
that asks for neither sees the version 1 exchange unchanged.

Neither class is thread-safe by itself; :class:`ClientConnection` says what a threaded
shell must serialise.
"""

from __future__ import annotations

import array
import errno as _errno
import itertools
import os
import socket as _socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import msgpack

from .batch import BIG_PAYLOAD, gc_paused
from .codec import (
    FINAL,
    MAX_FRAME,
    FrameDecoder,
    Limits,
    MessageUnpacker,
    ProtocolError,
    Request,
    encode_frames,
    encode_result,
    error_reply,
    exception_from_reply,
    parse_request,
)
from .methods import call_mutates

__all__ = [
    "NOTIFY",
    "PARTIAL",
    "Cancel",
    "More",
    "Reply",
    "Partial",
    "Reject",
    "Closed",
    "CLOSED",
    "ClientConnection",
    "ServerConnection",
    "fds_of",
    "fd_ancillary",
    "close_fds",
    "refusal",
]

#: message type of a notification (msgpack-RPC): ``[2, method, params]``; only "cancel"
NOTIFY = 2
#: message type of an intermediate message of a call: ``[3, msgid, kind, data]``
PARTIAL = 3

_FINAL_HEADER = bytes([FINAL])
_SOL_SOCKET = int(_socket.SOL_SOCKET)
_SCM_RIGHTS = int(_socket.SCM_RIGHTS)
_MSG_TRUNC = int(_socket.MSG_TRUNC)  # plain ints: IntFlag & costs microseconds
_MSG_CTRUNC = int(_socket.MSG_CTRUNC)
_NO_FDS: tuple[int, ...] = ()
_Ancillary = Sequence[tuple[int, int, bytes]]


# -- fds ----------------------------------------------------------------------------------------


def fds_of(ancdata: _Ancillary) -> list[int]:
    """The fds of ``SCM_RIGHTS`` control messages, as ``recvmsg`` returns them."""
    out: list[int] = []
    for level, typ, data in ancdata:
        if level == _SOL_SOCKET and typ == _SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            out.extend(a)
    return out


def fd_ancillary(fd: int | None) -> list[tuple[int, int, bytes]]:
    """``sendmsg``'s ancillary data passing ``fd`` (none for None)."""
    if fd is None:
        return []
    return [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", [fd]).tobytes())]


def close_fds(fds: Sequence[int]) -> int:
    """Close each fd, ignoring ones already closed; returns how many were closed."""
    n = 0
    for fd in fds:
        try:
            os.close(fd)
            n += 1
        except OSError:
            pass
    return n


def _frames(payload: bytes, max_frame: int) -> list[tuple[bytes, ...]]:
    # one frame: header and payload as two buffers of one sendmsg (no copy of the payload)
    if len(payload) < max_frame:
        return [(_FINAL_HEADER, payload)]
    return [(f,) for f in encode_frames(payload, max_frame)]


# -- events -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """The final response of a call (``msgid`` None: an error about the whole connection)."""

    msgid: int | None
    error: dict[str, Any] | None
    result: Any
    #: fds that came with it; whoever takes the event owns them
    fds: Sequence[int] = _NO_FDS


@dataclass(slots=True)
class Partial:
    """An intermediate message of a call: more follow, its :class:`Reply` ends it."""

    msgid: int
    kind: str
    data: Any
    fds: Sequence[int] = _NO_FDS


@dataclass(slots=True)
class Cancel:
    """The peer asks the daemon to stop its call ``msgid`` (a no-op if it is over)."""

    msgid: int


@dataclass(slots=True)
class More:
    """The peer took a page of stream ``msgid``: the daemon may send one more."""

    msgid: int


@dataclass(slots=True)
class Reject:
    """A datagram the daemon refuses: send ``reply`` (an error response), then close the
    connection if ``fatal``."""

    reply: bytes
    fatal: bool


class Closed:
    """The peer closed its end (EOF)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CLOSED"


CLOSED = Closed()


# -- the client end -----------------------------------------------------------------------------


class ClientConnection:
    """A client's end: msgids, requests out, replies in, filed by msgid for their callers.

    One per socket (a reconnect makes a new one, so a waiter knows its call died with the
    old one).  A threaded shell serialises :meth:`request` (one sender at a time, which it
    must anyway so that frames do not interleave) and :meth:`receive` (one reader at a
    time), and calls :meth:`deliver`, :meth:`take` and :meth:`forget` under one lock, the
    lock its waiters check under; :meth:`receive` needs no lock, so a big reply is decoded
    while other threads send.
    """

    def __init__(self, limits: Limits | None = None, *, max_frame: int = MAX_FRAME) -> None:
        self.limits = limits or Limits.for_responses()
        self.max_frame = max_frame
        #: set once the daemon sent an error about the whole connection (msgid nil)
        self.error: BaseException | None = None
        self._ids = itertools.count(1)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._decoder = FrameDecoder(self.limits)
        self._feed = self._decoder.feed
        self._unpack = MessageUnpacker(self.limits)
        self._fds: list[int] = []  # fds of the message being reassembled
        self._pending: set[int] = set()
        self._results: dict[int, Reply] = {}
        self._partials: dict[int, deque[Partial]] = {}

    # -- sending ----------------------------------------------------------------------------

    def request(self, method: str, params: Any, options: dict[str, Any] | None = None
                ) -> tuple[int, list[tuple[bytes, ...]]]:
        """A new call: its msgid and the datagrams to send, in order (each a tuple of
        buffers for one ``sendmsg``; one datagram unless the request is big).  ``options``:
        version 2 call options (``{"progress": True}``)."""
        msgid = next(self._ids) & 0xFFFFFFFF
        if options:
            payload = self._pack([0, msgid, method, params, options])
        else:
            payload = self._pack([0, msgid, method, params])
        self._pending.add(msgid)
        if len(payload) < self.max_frame:
            return msgid, [(_FINAL_HEADER, payload)]
        return msgid, _frames(payload, self.max_frame)

    def more(self, msgid: int) -> list[tuple[bytes, ...]]:
        """The datagram telling the daemon a page of stream ``msgid`` was taken."""
        return [(_FINAL_HEADER, self._pack([NOTIFY, "more", [msgid]]))]

    def cancel(self, msgid: int) -> list[tuple[bytes, ...]]:
        """Give up on ``msgid`` (as :meth:`forget`) and the datagram asking the daemon to
        stop it; send it whenever no other message is half sent."""
        self.forget(msgid)
        return [(_FINAL_HEADER, self._pack([NOTIFY, "cancel", [msgid]]))]

    # -- receiving --------------------------------------------------------------------------

    def receive(self, data: bytes, ancdata: _Ancillary = (), flags: int = 0) -> Reply | Partial | None:
        """One datagram as ``recvmsg`` returned it; the message once it is whole.

        Raises ``ConnectionError`` when the daemon closed the connection or broke the
        protocol (the connection is then unusable; fds received are closed)."""
        if ancdata:
            self._fds.extend(fds_of(ancdata))
        if not data:
            self._drop_fds()
            raise ConnectionError("beneathd closed the connection")
        if flags & _MSG_TRUNC:
            self._drop_fds()
            raise ConnectionError("oversized frame from beneathd")
        try:
            payload = self._feed(data)
            if payload is None:
                return None
            if len(payload) < BIG_PAYLOAD:
                obj = self._unpack(payload)
            else:
                with gc_paused():  # (a batch's reply: 100k small lists)
                    obj = self._unpack(payload)
        except ProtocolError as e:
            self._drop_fds()
            raise ConnectionError(f"protocol error from beneathd: {e.message}") from None
        fds: Sequence[int] = _NO_FDS
        if self._fds:
            fds, self._fds = self._fds, []
        if obj.__class__ is list and len(obj) == 4:
            kind, msgid, a, b = obj
            if kind == 1 and kind.__class__ is int and (msgid is None or msgid.__class__ is int) and (
                    a is None or a.__class__ is dict):
                return Reply(msgid, a, b, fds)
            if kind == PARTIAL and kind.__class__ is int and msgid.__class__ is int and isinstance(a, str):
                return Partial(msgid, a, b, fds)
        close_fds(fds)
        raise ConnectionError("protocol error from beneathd: a response is [1, msgid, error, result]")

    def _drop_fds(self) -> None:
        close_fds(self._fds)
        self._fds = []

    # -- filing messages for their callers --------------------------------------------------

    def deliver(self, event: Reply | Partial) -> BaseException | None:
        """File a received message under its msgid (its fds are closed if nobody waits for
        it).  Returns the exception every caller gets when it was about the whole
        connection (a refused peer, a request the daemon could not read)."""
        msgid = event.msgid
        if msgid is None:
            close_fds(event.fds)
            exc = self.error = exception_from_reply(getattr(event, "error", None))
            return exc
        if msgid not in self._pending:
            close_fds(event.fds)
        elif event.__class__ is Reply:
            self._results[msgid] = event  # type: ignore[assignment]
        else:
            self._partials.setdefault(msgid, deque()).append(event)  # type: ignore[arg-type]
        return None

    def take(self, msgid: int) -> Reply | Partial | None:
        """The next message filed for ``msgid`` (its intermediate ones first), or None; the
        call is over once its :class:`Reply` is taken."""
        if self._partials:
            q = self._partials.get(msgid)
            if q:
                ev = q.popleft()
                if not q:
                    del self._partials[msgid]
                return ev
        r = self._results.pop(msgid, None)
        if r is not None:
            self._pending.discard(msgid)
        return r

    def waiting(self, msgid: int) -> bool:
        """True while ``msgid``'s final reply has not been taken (nor the call forgotten)."""
        return msgid in self._pending

    def forget(self, msgid: int) -> None:
        """The caller gave up on ``msgid`` (cancelled, broken): whatever comes for it, or
        came and was not taken, is dropped and its fds closed."""
        self._pending.discard(msgid)
        r = self._results.pop(msgid, None)
        if r is not None:
            close_fds(r.fds)
        for p in self._partials.pop(msgid, ()):
            close_fds(p.fds)

    def close(self) -> None:
        """Drop everything not taken (closing its fds)."""
        for msgid in list(self._pending):
            self.forget(msgid)
        for msgid in list(self._results):
            self.forget(msgid)
        self._drop_fds()


# -- the daemon's end ---------------------------------------------------------------------------


class ServerConnection:
    """The daemon's end of one connection: requests in (validated against the method table
    and the peer's access), replies out.

    ``receive`` returns a :class:`~beneathd.protocol.codec.Request` to serve, a
    :class:`Reject` to send, :data:`CLOSED`, or None (a frame of a longer message, or a
    datagram that carried only fds).  Each fault the peer commits is counted and described
    in :attr:`notes` for the shell to log and clear; after ``max_faults`` a fault is fatal.
    """

    def __init__(self, access: str = "rw", limits: Limits | None = None, *, max_frame: int = MAX_FRAME,
                 max_faults: int = 16) -> None:
        #: "rw" or "ro" (a read-only peer: no mutating method, no open() for writing)
        self.access = access
        self.limits = limits or Limits.for_requests()
        self.max_frame = max_frame
        self.max_message = self.limits.max_message
        self.max_faults = max_faults
        self.faults = 0
        #: what the peer did wrong, for the shell's log (it clears the list)
        self.notes: list[str] = []
        self._decoder = FrameDecoder(self.limits)
        self._feed = self._decoder.feed
        self._unpack = MessageUnpacker(self.limits)
        # the loop thread's packer; worker threads pass ``threadsafe=True``
        self._pack = msgpack.Packer(use_bin_type=True).pack

    @property
    def receiving(self) -> bool:
        """A message is half received (the shell applies its partial-message timeout)."""
        return self._decoder.pending

    def _fault(self, what: str) -> None:
        self.faults += 1
        self.notes.append(what)

    def receive(self, data: bytes, ancdata: _Ancillary = (), flags: int = 0
                ) -> Request | Cancel | More | Reject | Closed | None:
        """One datagram as ``recvmsg`` returned it (fds it carried are closed at once)."""
        if ancdata:
            n = close_fds(fds_of(ancdata))
            if n:
                self._fault(f"sent {n} unexpected fd(s); closed them")
        if flags & _MSG_CTRUNC:
            self._fault("sent more fds than accepted; dropped")
        if not data:
            if flags & _MSG_CTRUNC or ancdata:
                return None
            return CLOSED
        if flags & _MSG_TRUNC or len(data) > self.max_frame:
            self._fault("frame too large; closing")
            return Reject(self._error(None, ProtocolError(f"frame exceeds {self.max_frame} bytes",
                                                          err=_errno.EMSGSIZE).to_wire()), True)
        try:
            payload = self._feed(data)
            if payload is None:
                return None
            if len(payload) < BIG_PAYLOAD:
                obj = self._unpack(payload)
                if obj.__class__ is list and obj and obj[0] == NOTIFY and obj[0].__class__ is int:
                    return self._notification(obj)
                req = parse_request(obj)
            else:
                with gc_paused():  # (a batch: 100k calls)
                    obj = self._unpack(payload)
                    if obj.__class__ is list and obj and obj[0] == NOTIFY and obj[0].__class__ is int:
                        return self._notification(obj)
                    req = parse_request(obj)
        except ProtocolError as e:
            self._fault(f"bad request: {e.message}")
            return Reject(self._error(e.msgid, e.to_wire()), e.fatal or self.faults >= self.max_faults)
        if self.access != "rw" and req.method.result != "batch" and call_mutates(req.method, req.args):
            name = req.method.name
            self._fault(f"read-only peer called {name}")
            err = {"errno": _errno.EACCES, "code": "EACCES",
                   "message": f"read-only peer may not call {name}" + (" for writing" if name == "open" else ""),
                   "paths": []}
            return Reject(self._error(req.msgid, err), self.faults >= self.max_faults)
        req.size = len(payload)
        return req

    def _notification(self, obj: list[Any]) -> Cancel | More:
        if len(obj) == 3 and obj[1] in ("cancel", "more") and isinstance(obj[2], list) and len(obj[2]) == 1:
            msgid = obj[2][0]
            if msgid.__class__ is int and 0 <= msgid < 2**32:
                return Cancel(msgid) if obj[1] == "cancel" else More(msgid)
        raise ProtocolError('a notification is [2, "cancel" or "more", [msgid]]')

    # -- replies ------------------------------------------------------------------------------

    def reply(self, req: Request, value: Any, *, threadsafe: bool = False) -> bytes:
        """The response to ``req`` carrying what its ``Root`` method returned; an error
        response (``EFBIG``, naming the limit) if it would exceed the message limit."""
        pack = msgpack.packb if threadsafe else self._pack
        if req.packed:
            wire = list(value)  # Root._scandir_packed's four strings, as they are
        else:
            wire = encode_result(req.method, value)
            if req.method.result == "entries" and not req.link_target:
                wire = [e[:5] for e in wire]  # version 1: no link text
        payload: bytes = pack([1, req.msgid, None, wire])
        if len(payload) > self.max_message:
            # what to use instead: a listing pages through walk; contents stream through open
            instead = "walk(), which sends a big directory in pages" if req.method.result == "entries" or \
                req.method.name == "listdir" else "open() for big files"
            return self.error(req, OSError(
                _errno.EFBIG, f"result of {len(payload)} bytes exceeds the message limit "
                              f"({self.max_message}); use {instead}"), threadsafe=threadsafe)
        return payload

    def error(self, req: Request, exc: BaseException, *, threadsafe: bool = False) -> bytes:
        """The error response to ``req`` for an exception its ``Root`` method raised."""
        wire = error_reply(exc, req.method, req.args)
        if threadsafe:
            return msgpack.packb([1, req.msgid, wire, None], use_bin_type=True)  # type: ignore[no-any-return]
        return self._error(req.msgid, wire)

    def _error(self, msgid: int | None, wire: dict[str, Any]) -> bytes:
        return self._pack([1, msgid, wire, None])  # type: ignore[no-any-return]

    def partial(self, msgid: int, kind: str, data: Any, *, threadsafe: bool = False) -> bytes:
        """An intermediate message of call ``msgid`` (streams; see the module docstring)."""
        pack = msgpack.packb if threadsafe else self._pack
        return pack([PARTIAL, msgid, kind, data])  # type: ignore[no-any-return]

    def progress(self, msgid: int, entries: int, nbytes: int) -> bytes:
        """A ``progress`` message of call ``msgid``: what it has done so far."""
        return self._pack([PARTIAL, msgid, "progress", [entries, nbytes]])  # type: ignore[no-any-return]

    def datagrams(self, payload: bytes) -> list[tuple[bytes, ...]]:
        """The datagrams that carry one message (each a tuple of buffers for one
        ``sendmsg``); an fd goes with the first."""
        return _frames(payload, self.max_frame)


def refusal(err: int, message: str) -> bytes:
    """The one datagram a daemon sends a peer it will not serve (then EOF)."""
    wire = {"errno": err, "code": _errno.errorcode.get(err, "EIO"), "message": message}
    return _FINAL_HEADER + msgpack.packb([1, None, wire, None], use_bin_type=True)

