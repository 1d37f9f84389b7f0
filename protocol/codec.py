"""Sans-I/O codec: frames, messages, validation.  No sockets, no trio (the model is h11).

Layers (documented in PROTOCOL.md):

* **frame** = one ``SOCK_SEQPACKET`` datagram: one header byte (``FINAL`` 0x00 or ``MORE``
  0x01) followed by payload bytes.  A *message* is the concatenation of the payloads of
  consecutive frames up to and including a ``FINAL`` one.  A sender never interleaves the
  frames of two messages on one socket direction.
* **message** = one msgpack object: request ``[0, msgid, method, params]`` or response
  ``[1, msgid, error, result]``.
* **params** = a list in the method's wire-parameter order (trailing ones may be left off
  and take their defaults) or a map name -> value.

Everything here raises :class:`ProtocolError` (with an errno and a message fit to send back)
and never anything else for bad input.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .batch import MAX_BATCH, NOT_BATCHABLE
from .errors import error_from_wire, error_to_wire
from .methods import METHODS, Method, Param
from .modes import open_flags
from .types import DirEntry, entries_from_packed, stat_from_list, stat_to_list

__all__ = [
    "REQUEST",
    "RESPONSE",
    "FINAL",
    "MORE",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "Limits",
    "ProtocolError",
    "FrameDecoder",
    "encode_frames",
    "pack",
    "pack_request",
    "pack_response",
    "unpack",
    "MessageUnpacker",
    "Request",
    "Response",
    "parse_request",
    "parse_response",
    "stat_from_wire",
    "encode_params",
    "encode_result",
    "decode_result",
    "error_reply",
    "exception_from_reply",
    "path_indexes",
]

REQUEST = 0
RESPONSE = 1

FINAL = 0x00
MORE = 0x01

#: Largest datagram either side sends (header included).  Linux refuses a datagram larger
#: than the sender's ``SO_SNDBUF`` - 32 (212992 - 32 by default).
MAX_FRAME = 200 * 1024
#: Largest reassembled message accepted by default.
MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Hard limits applied when decoding (a daemon and a client may use different ones)."""

    max_frame: int = MAX_FRAME
    max_message: int = MAX_MESSAGE
    max_str_len: int = 64 * 1024
    max_bin_len: int = MAX_MESSAGE
    max_array_len: int = 64
    max_map_len: int = 32

    @classmethod
    def for_requests(cls, max_message: int = MAX_MESSAGE) -> Limits:
        """What a daemon accepts: small containers but a batch's list of calls, one big bin
        at most (write_file data); every element costs a byte of the message anyway."""
        return cls(max_message=max_message, max_bin_len=max_message, max_array_len=MAX_BATCH)

    @classmethod
    def for_responses(cls, max_message: int = MAX_MESSAGE) -> Limits:
        """What a client accepts: big listings (every entry costs >= 2 bytes)."""
        return cls(
            max_message=max_message,
            max_bin_len=max_message,
            max_str_len=1024 * 1024,
            max_array_len=max_message // 2,
            max_map_len=64,
        )


class ProtocolError(Exception):
    """A message that cannot be accepted.  ``msgid`` is known when the envelope was readable.

    ``fatal`` means the connection cannot go on (framing broken, size limit exceeded).
    """

    def __init__(self, message: str, *, err: int = _errno.EPROTO, msgid: int | None = None,
                 fatal: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.errno = err
        self.msgid = msgid
        self.fatal = fatal

    def to_wire(self) -> dict[str, Any]:
        return {"errno": self.errno, "code": _errno.errorcode.get(self.errno, "EPROTO"), "message": self.message}


# -- frames ---------------------------------------------------------------------------------


def encode_frames(payload: bytes, max_frame: int = MAX_FRAME) -> list[bytes]:
    """Split one message into datagrams (each at most ``max_frame`` bytes)."""
    room = max_frame - 1
    if len(payload) <= room:
        return [b"\x00" + payload]
    mv = memoryview(payload)
    out = []
    n = len(payload)
    for off in range(0, n, room):
        last = off + room >= n
        out.append((b"\x00" if last else b"\x01") + bytes(mv[off:off + room]))
    return out


class FrameDecoder:
    """Reassembles datagrams into messages.  ``feed()`` returns a payload once it is whole."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._parts: list[bytes] = []
        self._size = 0
        # a lone FINAL frame this size or smaller is a whole, acceptable message
        self._fast_max = min(self.limits.max_frame, self.limits.max_message + 1)

    @property
    def pending(self) -> bool:
        """True while a message is partly received."""
        return bool(self._parts)

    @property
    def pending_size(self) -> int:
        return self._size

    def reset(self) -> None:
        self._parts = []
        self._size = 0

    def feed(self, datagram: bytes) -> bytes | None:
        # The common case first: one FINAL frame, nothing pending (one header byte check).
        if not self._parts and datagram and datagram[0] == FINAL and len(datagram) <= self._fast_max:
            return datagram[1:]
        if not datagram:
            self.reset()
            raise ProtocolError("empty frame", fatal=True)
        if len(datagram) > self.limits.max_frame:
            self.reset()
            raise ProtocolError(f"frame of {len(datagram)} bytes exceeds {self.limits.max_frame}",
                                err=_errno.EMSGSIZE, fatal=True)
        head = datagram[0]
        if head not in (FINAL, MORE):
            self.reset()
            raise ProtocolError(f"bad frame header byte 0x{head:02x}", fatal=True)
        self._size += len(datagram) - 1
        if self._size > self.limits.max_message:
            self.reset()
            raise ProtocolError(f"message exceeds {self.limits.max_message} bytes", err=_errno.EMSGSIZE,
                                fatal=True)
        if head == MORE:
            self._parts.append(datagram[1:])
            return None
        if not self._parts:
            self._size = 0
            return datagram[1:]
        self._parts.append(datagram[1:])
        payload = b"".join(self._parts)
        self.reset()
        return payload


# -- messages ---------------------------------------------------------------------------------


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def pack_request(msgid: int, method: str, params: Any) -> bytes:
    return msgpack.packb([REQUEST, msgid, method, params], use_bin_type=True)


def pack_response(msgid: int | None, error: Any, result: Any) -> bytes:
    return msgpack.packb([RESPONSE, msgid, error, result], use_bin_type=True)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("msgpack ext types are refused")


def _unpack_options(limits: Limits) -> dict[str, Any]:
    """msgpack's options for one side's limits: the one statement of what is refused."""
    return dict(raw=False, use_list=True, strict_map_key=True, max_str_len=limits.max_str_len,
                max_bin_len=limits.max_bin_len, max_array_len=limits.max_array_len,
                max_map_len=limits.max_map_len, max_ext_len=0, ext_hook=_refuse_ext)


def unpack(payload: bytes, limits: Limits) -> Any:
    """One msgpack object, with the limits applied; ext types and trailing bytes refused."""
    try:
        return msgpack.unpackb(payload, **_unpack_options(limits))
    except RecursionError:
        raise ProtocolError("message nested too deeply") from None
    except Exception as e:  # msgpack raises ValueError, ExtraData, FormatError, StackError, ...
        raise ProtocolError(f"undecodable message: {type(e).__name__}: {e}"[:300]) from None


class MessageUnpacker:
    """:func:`unpack` with the limits bound once (one per connection; not thread-safe).

    Payloads up to :attr:`SMALL` bytes go through one reused ``msgpack.Unpacker`` (no
    keyword parsing per call); bigger ones through :func:`unpack`, so that no connection
    keeps a big buffer.  Same results and errors as :func:`unpack`.
    """

    SMALL = 64 * 1024

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._u = self._new()
        self._pos = 0

    def _new(self) -> Any:
        return msgpack.Unpacker(max_buffer_size=self.SMALL, **_unpack_options(self.limits))

    def __call__(self, payload: Any) -> Any:
        n = len(payload)
        if n > self.SMALL or n == 0:
            return unpack(payload, self.limits)
        u = self._u
        try:
            u.feed(payload)
            obj = u.unpack()
            pos = u.tell()
        except BaseException as e:
            self._u = self._new()
            self._pos = 0
            if isinstance(e, RecursionError):
                raise ProtocolError("message nested too deeply") from None
            if isinstance(e, msgpack.OutOfData):
                raise ProtocolError("undecodable message: incomplete msgpack object") from None
            if isinstance(e, Exception):
                raise ProtocolError(f"undecodable message: {type(e).__name__}: {e}"[:300]) from None
            raise
        if pos - self._pos != n:
            self._u = self._new()
            self._pos = 0
            raise ProtocolError("undecodable message: ExtraData: trailing bytes after the object")
        self._pos = pos
        return obj


@dataclass(slots=True)
class Request:
    msgid: int
    method: Method
    #: name -> value, every wire parameter present (defaults filled in), paths as bytes
    args: dict[str, Any] = field(default_factory=dict)
    #: bytes of the request's message (what it holds of the daemon's memory while served)
    size: int = 0
    #: the caller asked for ``progress`` messages (version 2 call option)
    progress: bool = False
    #: scandir entries carry their link text (version 2 call option)
    link_target: bool = False
    #: scandir answers in the packed form (version 2 call option; types.entries_from_packed)
    packed: bool = False


@dataclass(slots=True)
class Response:
    msgid: int | None
    error: dict[str, Any] | None
    result: Any


_MAX_MSGID = 2**32 - 1


def _is_int(v: Any) -> bool:
    return type(v) is int


class _Bad(Exception):
    """A wire value refused by a checker (the message names what is wrong)."""


def _c_path(v: Any) -> Any:
    if v.__class__ is not bytes:
        if isinstance(v, str):
            try:
                v = os.fsencode(v)
            except UnicodeError:
                raise _Bad("not encodable") from None
        if not isinstance(v, bytes):
            raise _Bad(f"expected bin, got {type(v).__name__}")
    if 0 in v:  # (not b"\x00" in v: bytes.__contains__ tries the bytes as an int first and
        # formats, then drops, a TypeError: ~0.4 us; an int is looked up by memchr at once)
        raise _Bad("embedded NUL byte")
    if len(v) > 65536:
        raise _Bad("too long")
    return v


def _c_of(cls: type, wire: str, exact: bool = False) -> Any:
    """A checker accepting instances of ``cls`` (``exact``: that class itself: a bool is
    not an int on the wire), named by its msgpack type."""
    def check(v: Any) -> Any:
        if (v.__class__ is not cls) if exact else not isinstance(v, cls):
            raise _Bad(f"expected {wire}, got {type(v).__name__}")
        return v
    return check


_c_data = _c_of(bytes, "bin")
_c_bool = _c_of(bool, "bool", exact=True)
_c_str = _c_of(str, "str")


def _c_int(v: Any) -> Any:
    if v.__class__ is not int:
        raise _Bad(f"expected int, got {type(v).__name__}")
    if not -(2**63) <= v < 2**64:
        raise _Bad("out of range")
    return v


def _c_optstr(v: Any) -> Any:
    if v is not None and not isinstance(v, str):
        raise _Bad(f"expected str or nil, got {type(v).__name__}")
    return v


def _c_ns(v: Any) -> Any:
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v)):
        raise _Bad("expected nil or [atime_ns, mtime_ns]")
    return (v[0], v[1])


def _c_openmode(v: Any) -> Any:
    if not isinstance(v, str) or len(v) > 8:
        raise _Bad("expected an open() mode string")
    try:
        open_flags(v)
    except (TypeError, ValueError) as e:
        raise _Bad(str(e)) from None
    return v


def _c_calls(v: Any) -> Any:
    """A batch's calls: the array itself, each ``[method, params]`` parsed only when it runs
    (:func:`parse_batched`), so that a 100k-call batch is never parsed in one go."""
    if v.__class__ is not list:
        raise _Bad(f"expected an array of calls, got {type(v).__name__}")
    if len(v) > MAX_BATCH:
        raise _Bad(f"{len(v)} calls exceed the batch limit of {MAX_BATCH}")
    return v


def parse_batched(c: Any) -> Request:
    """One call of a batch as a request of its own; ``ProtocolError`` (its slot's error, not
    the batch's) for a bad shape, bad parameters, or a method that cannot be batched."""
    if c.__class__ is not list or len(c) != 2:
        raise ProtocolError("a batched call is [method, params]", err=_errno.EINVAL)
    name = c[0]
    spec = _BATCHABLE.get(name) if name.__class__ is str else None
    if spec is None:
        if not isinstance(name, str):
            raise ProtocolError("method name must be a str", err=_errno.EINVAL)
        if name in METHODS:
            raise ProtocolError(f"{name} cannot be batched", err=_errno.EINVAL)
        raise ProtocolError(f"unknown method {name[:64]!r}", err=_errno.ENOSYS)
    return Request(0, spec.method, _args(spec, name, c[1], 0))


#: wire type -> checker: returns the value the daemon passes to Root, raises _Bad
_CHECKERS = {
    "calls": _c_calls,
    "path": _c_path,
    "text": _c_path,
    "data": _c_data,
    "int": _c_int,
    "bool": _c_bool,
    "str": _c_str,
    "optstr": _c_optstr,
    "ns": _c_ns,
    "openmode": _c_openmode,
}


def _check_param(p: Param, v: Any, msgid: int) -> Any:
    """Validate one wire value; return what the daemon passes to Root."""
    check = _CHECKERS.get(p.type)
    if check is None:  # pragma: no cover - table error
        raise ProtocolError(f"parameter {p.name!r}: unknown parameter type {p.type!r}", err=_errno.EINVAL, msgid=msgid)
    try:
        return check(v)
    except _Bad as e:
        raise ProtocolError(f"parameter {p.name!r}: {e}", err=_errno.EINVAL, msgid=msgid) from None


class _ReqSpec:
    """What parse_request needs of one method, computed once from the table."""

    __slots__ = ("method", "params", "names", "n")

    def __init__(self, m: Method) -> None:
        self.method = m
        out = []
        for p in m.wire_params:
            d = p.default
            if p.type in ("path", "text") and isinstance(d, str):
                d = os.fsencode(d)
            out.append((p.name, _CHECKERS[p.type], p.required, d))
        #: (name, checker, required, default) in wire order
        self.params: tuple[tuple[str, Any, bool, Any], ...] = tuple(out)
        self.names = frozenset(p.name for p in m.wire_params)
        self.n = len(out)


_REQ_SPECS: dict[str, _ReqSpec] = {name: _ReqSpec(m) for name, m in METHODS.items()}


#: what a batch may hold (not an fd, a stream, a batch or the writers' protocol methods)
_BATCHABLE: dict[str, _ReqSpec] = {n: sp for n, sp in _REQ_SPECS.items()
                                   if n not in NOT_BATCHABLE and not sp.method.internal}

#: version 2 call options (the optional fifth element of a request) and their types
CALL_OPTIONS = {"progress": bool, "link_target": bool, "packed": bool}


def parse_request(obj: Any) -> Request:
    """Validate a decoded request against the method table."""
    options = None
    if obj.__class__ is not list or len(obj) != 4:
        if not isinstance(obj, list) or len(obj) not in (4, 5):
            raise ProtocolError("a request is [0, msgid, method, params] or [0, msgid, method, params, options]")
        if len(obj) == 5:
            options = obj[4]
            obj = obj[:4]
    kind, msgid, name, params = obj
    if kind.__class__ is not int or kind != REQUEST:
        raise ProtocolError("not a request (type must be 0)")
    if msgid.__class__ is not int or not 0 <= msgid <= _MAX_MSGID:
        raise ProtocolError("msgid must be an int in [0, 2**32)")
    if not isinstance(name, str):
        raise ProtocolError("method name must be a str", err=_errno.EINVAL, msgid=msgid)
    spec = _REQ_SPECS.get(name)
    if spec is None:
        raise ProtocolError(f"unknown method {name[:64]!r}", err=_errno.ENOSYS, msgid=msgid)
    req = Request(msgid, spec.method, _args(spec, name, params, msgid))
    if options is not None:
        _parse_options(req, options)
    return req


def _args(spec: _ReqSpec, name: str, params: Any, msgid: int) -> dict[str, Any]:
    """A request's parameters checked against its method's table entry."""
    args: dict[str, Any] = {}
    pname = ""
    try:
        if params.__class__ is list or isinstance(params, list):
            n = len(params)
            if n > spec.n:
                raise ProtocolError(f"{name}: at most {spec.n} parameters, got {n}",
                                    err=_errno.EINVAL, msgid=msgid)
            i = 0
            for pname, check, required, default in spec.params:
                if i < n:
                    args[pname] = check(params[i])
                elif required:
                    raise ProtocolError(f"{name}: missing parameter {pname!r}", err=_errno.EINVAL, msgid=msgid)
                else:
                    args[pname] = default
                i += 1
        elif isinstance(params, dict) or params is None:
            given = params or {}
            names = spec.names
            for k in given:
                if k not in names:
                    raise ProtocolError(f"{name}: unknown parameter {str(k)[:64]!r}", err=_errno.EINVAL,
                                        msgid=msgid)
            for pname, check, required, default in spec.params:
                if pname in given:
                    args[pname] = check(given[pname])
                elif required:
                    raise ProtocolError(f"{name}: missing parameter {pname!r}", err=_errno.EINVAL, msgid=msgid)
                else:
                    args[pname] = default
        else:
            raise ProtocolError("params must be an array or a map", err=_errno.EINVAL, msgid=msgid)
    except _Bad as e:
        raise ProtocolError(f"parameter {pname!r}: {e}", err=_errno.EINVAL, msgid=msgid) from None
    return args


def _parse_options(req: Request, options: Any) -> None:
    if not isinstance(options, dict):
        raise ProtocolError("call options must be a map", err=_errno.EINVAL, msgid=req.msgid)
    for k, v in options.items():
        want = CALL_OPTIONS.get(k)
        if want is None:
            raise ProtocolError(f"unknown call option {str(k)[:64]!r}", err=_errno.EINVAL, msgid=req.msgid)
        if v.__class__ is not want:
            raise ProtocolError(f"call option {k!r}: expected {want.__name__}", err=_errno.EINVAL, msgid=req.msgid)
    if options.get("progress"):
        if not req.method.reports_progress:
            raise ProtocolError(f"{req.method.name} does not report progress", err=_errno.EINVAL,
                                msgid=req.msgid)
        req.progress = True
    if options.get("link_target"):
        if req.method.result != "entries":
            raise ProtocolError(f"{req.method.name} has no link_target", err=_errno.EINVAL, msgid=req.msgid)
        req.link_target = True
    if options.get("packed"):
        if req.method.result != "entries":
            raise ProtocolError(f"{req.method.name} has no packed form", err=_errno.EINVAL, msgid=req.msgid)
        req.packed = True


def parse_response(obj: Any) -> Response:
    if not isinstance(obj, list) or len(obj) != 4 or obj[0] != RESPONSE or type(obj[0]) is not int:
        raise ProtocolError("a response is [1, msgid, error, result]")
    _, msgid, error, result = obj
    if msgid is not None and not _is_int(msgid):
        raise ProtocolError("bad msgid in response")
    if error is not None and not isinstance(error, dict):
        raise ProtocolError("bad error in response")
    return Response(msgid, error, result)


# -- parameters and results on each side ----------------------------------------------------


def _fs(v: Any) -> Any:
    v = os.fspath(v)
    if isinstance(v, str):
        return os.fsencode(v)
    if isinstance(v, bytes):
        return v
    raise TypeError(f"expected str, bytes or os.PathLike object, not {type(v).__name__}")


def encode_params(method: Method, args: dict[str, Any]) -> list[Any]:
    """Client side: the wire params list (every wire parameter, in order)."""
    out = []
    for p in method.wire_params:
        v = args[p.name]
        if p.type in ("path", "text"):
            v = _fs(v)
            if 0 in v:  # (a NUL byte; see _c_path)
                raise ValueError("embedded null byte")  # what os raises
        elif p.type == "data":
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise TypeError(f"{method.name}() {p.name} must be bytes-like, not {type(v).__name__}")
            v = bytes(v)
        elif p.type == "ns":
            if v is not None:
                if not (isinstance(v, (tuple, list)) and len(v) == 2):
                    raise TypeError(f"{method.name}: ns must be a tuple of two ints")
                v = [int(v[0]), int(v[1])]
        elif p.type == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                v = v.__index__()  # TypeError for non-integers, like os
            v = int(v)
        elif p.type == "bool":
            v = bool(v)
        out.append(v)
    return out


def _none(value: Any) -> None:
    return None


#: result kind -> daemon-side encoder (paths were given to Root as bytes)
_RESULT_ENCODERS: dict[str, Any] = {
    "none": _none,
    "fd": lambda value: value,  # None, or an atomic writer's handle (an int)
    "bool": bool,
    "stat": stat_to_list,
    "names": lambda value: [os.fsencode(n) for n in value],
    "entries": lambda value: [e.to_wire() for e in value],
    "path": os.fsencode,
    "text": os.fsencode,
    "bytes": bytes,
    "usage": list,
    "walk": _none,  # the tuples went in pages
    "watch": _none,  # the events went in pages
    "batch": lambda value: value,  # the daemon encoded each call's slot
    "stats": dict,
}


def encode_result(method: Method, value: Any) -> Any:
    """Daemon side: the wire form of what Root returned (paths were given as bytes)."""
    enc = _RESULT_ENCODERS.get(method.result)
    if enc is None:  # pragma: no cover
        raise ValueError(f"unknown result kind {method.result!r}")
    return enc(value)


#: (the client's name for it: a stat result off the wire)
stat_from_wire = stat_from_list


def _bad_result(method: Method) -> OSError:
    return OSError(_errno.EPROTO, f"malformed {method.name} result from the daemon")


def decode_result(method: Method, wire: Any, like: Any = ".") -> Any:
    """Client side: the Python value, echoing ``like``'s type (the caller's first path)."""
    kind = method.result
    as_str = isinstance(os.fspath(like), str) if like is not None else True
    try:
        if kind == "batch":  # (the client decodes each slot with its call's own spec)
            if wire.__class__ is not list:
                raise TypeError
            return wire
        if kind in ("none", "fd", "walk", "watch"):
            return None
        if kind == "bool":
            if type(wire) is not bool:
                raise _bad_result(method)
            return wire
        if kind == "stat":
            return stat_from_wire(wire)
        if kind == "names":
            if not isinstance(wire, list) or not all(isinstance(n, bytes) for n in wire):
                raise _bad_result(method)
            return [os.fsdecode(n) for n in wire] if as_str else wire
        if kind == "entries":
            if not isinstance(wire, list):
                raise _bad_result(method)
            parent = os.fspath(like)
            if len(wire) == 4 and wire[0].__class__ is bytes:  # the packed form (a v1 entry is an array)
                return entries_from_packed(*wire, prefix=parent)
            return [DirEntry.from_wire(item, parent) for item in wire]
        if kind in ("path", "text"):
            if not isinstance(wire, bytes):
                raise _bad_result(method)
            return os.fsdecode(wire) if as_str else wire
        if kind == "bytes":
            if not isinstance(wire, bytes):
                raise _bad_result(method)
            return wire
        if kind == "usage":
            if not (isinstance(wire, list) and len(wire) == 2 and all(type(x) is int and x >= 0 for x in wire)):
                raise _bad_result(method)
            return (wire[0], wire[1])
        if kind == "stats":  # (names a client does not know yet are kept: a newer daemon may count more)
            if not (isinstance(wire, dict) and all(type(k) is str and type(v) is int for k, v in wire.items())):
                raise _bad_result(method)
            return dict(wire)
    except OSError:
        raise
    except (TypeError, ValueError):
        raise _bad_result(method) from None
    raise _bad_result(method)


# -- errors -----------------------------------------------------------------------------------


def path_indexes(method: Method, args: dict[str, Any], exc: BaseException) -> list[int]:
    """Which of the method's path parameters ``exc.filename`` / ``filename2`` name."""
    paths = [args[p.name] for p in method.wire_params if p.type in ("path", "text")]
    out: list[int] = []
    for attr in ("filename", "filename2"):
        fn = getattr(exc, attr, None)
        if fn is None:
            continue
        try:
            fb = _fs(fn)
        except TypeError:
            continue
        for i, p in enumerate(paths):
            if p == fb and i not in out:
                out.append(i)
                break
    return out


def error_reply(exc: BaseException, method: Method | None = None, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The wire error map for an exception raised by Root (``paths``, ``exception`` added)."""
    err = error_to_wire(exc)
    if isinstance(exc, (TypeError, ValueError)) and not isinstance(exc, OSError):
        err["exception"] = type(exc).__name__
        err["message"] = str(exc)[:1000]
    if method is not None and args is not None and isinstance(exc, OSError):
        err["paths"] = path_indexes(method, args, exc)
    return err


def exception_from_reply(err: Any, method: Method | None = None, args: dict[str, Any] | None = None) -> BaseException:
    """Client side: rebuild the exception naming the caller's own path(s)."""
    if isinstance(err, dict) and err.get("exception") in ("ValueError", "TypeError"):
        cls = ValueError if err["exception"] == "ValueError" else TypeError
        msg = err.get("message")
        return cls(msg if isinstance(msg, str) else "invalid argument")
    names: list[Any] = []
    if method is not None and args is not None:
        paths = [args[p.name] for p in method.params if p.type in ("path", "text")]
        idx = err.get("paths") if isinstance(err, dict) else None
        if isinstance(idx, list) and all(_is_int(i) and 0 <= i < len(paths) for i in idx):
            names = [paths[i] for i in idx]
        else:
            names = paths[:2]
        # symlink(target, path): the path is what the caller means, like os.symlink's filename
        # (os names both); keep the table order otherwise.
    fn = names[0] if names else None
    fn2 = names[1] if len(names) > 1 else None
    return error_from_wire(err, fn, fn2)
