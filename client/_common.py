"""What the blocking and the async client share: per-method specs, encoding helpers, replies.

The methods themselves are real functions in ``client/_generated.py``, written from the
method table by ``client/_generate.py``: a real signature (a bad call raises ``TypeError``
exactly like a plain function, with no ``inspect`` binding per call), then per-parameter
encoding inlined for its wire type. A call hands its :class:`Spec` (precomputed per
method), the caller's argument values (a tuple, in table order) and the wire params to the
client's ``_call``.

No trio and no compiled extension here.
"""

from __future__ import annotations

import errno
import fcntl
import inspect
import io
import mmap
import operator
import os
import stat
import sys
from typing import Any

from ..protocol.batch import batch_calls, gc_paused
from ..protocol.codec import _bad_result, decode_result, exception_from_reply, stat_from_wire
from ..protocol.connection import ClientConnection, Reply, close_fds
from ..protocol.methods import METHODS, Method, call_mutates
from ..protocol.modes import open_flags
from ..protocol.types import WATCH_KINDS, Progress, WatchEvent

__all__ = ["Spec", "SPECS", "wrap_fd", "finish", "ConnectionLost", "lost"]

_EMPTY = inspect.Parameter.empty
_FSENC = sys.getfilesystemencoding()
_FSERR = sys.getfilesystemencodeerrors()


# -- per-type encoding helpers (the slow paths of the generated code) -------------------------


def _fs(v: Any) -> bytes:
    """str / bytes / os.PathLike -> bytes, like os.fsencode(os.fspath(v)), NUL refused."""
    v = os.fspath(v)
    if isinstance(v, str):
        b = v.encode(_FSENC, _FSERR)
    elif isinstance(v, bytes):
        b = bytes(v)
    else:  # pragma: no cover - os.fspath returns only str or bytes
        raise TypeError(f"expected str, bytes or os.PathLike object, not {type(v).__name__}")
    if 0 in b:  # (a NUL byte; an int is found by memchr at once, b"\x00" is tried as an int first)
        raise ValueError("embedded null byte")  # what os raises
    return b


def _data(name: str, pname: str, v: Any) -> bytes:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name}() {pname} must be bytes-like, not {type(v).__name__}")
    return bytes(v)


def _ns(name: str, v: Any) -> Any:
    if v is None:
        return None
    if not (isinstance(v, (tuple, list)) and len(v) == 2):
        raise TypeError(f"{name}: ns must be a tuple of two ints")
    return [int(v[0]), int(v[1])]


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        v = operator.index(v)  # TypeError for non-integers, like os
    return int(v)


def _open_check(mode: Any, encoding: Any) -> None:
    open_flags(mode)  # ValueError/TypeError for a bad mode, before any I/O
    if "b" in mode and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")


# -- the per-method spec -----------------------------------------------------------------------


class Spec:
    """What a call of one method needs, computed once from the table."""

    __slots__ = ("m", "name", "names", "like", "kind", "returns_fd", "progress_at", "options")

    def __init__(self, m: Method) -> None:
        self.m = m
        self.name = m.name
        #: every parameter name (wire or not), in table order: the order of ``vals``
        self.names = tuple(p.name for p in m.params)
        #: index of the first path parameter (the type results echo), or None
        self.like = next((i for i, p in enumerate(m.params) if p.type == "path"), None)
        self.kind = m.result
        self.returns_fd = m.returns_fd
        #: index of the ``progress`` callback in ``vals``, or None
        self.progress_at = next((i for i, p in enumerate(m.params) if p.type == "progress"), None)
        #: the call options every call of this method sends (scandir: the link texts, in the packed form)
        self.options = {"link_target": True, "packed": True} if m.result == "entries" else None

    def values(self, vals: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.names, vals))

    def retryable(self, vals: tuple[Any, ...]) -> bool:
        """May be sent again after a broken connection: it cannot have changed anything."""
        return not call_mutates(self.m, self.values(vals))

    def result(self, error: Any, result: Any, vals: tuple[Any, ...]) -> Any:
        """The Python value of a reply (no fd), or raise the exception it carries."""
        if error is not None:
            raise exception_from_reply(error, self.m, self.values(vals))
        kind = self.kind
        if kind == "stat":
            try:
                return stat_from_wire(result)
            except (TypeError, ValueError):
                raise _bad_result(self.m) from None
        if kind == "none":
            return None
        return decode_result(self.m, result, vals[self.like] if self.like is not None else None)


SPECS: dict[str, Spec] = {name: Spec(m) for name, m in METHODS.items()}


def wrap_fd(values: dict[str, Any], fd: int) -> Any:
    """``open()``'s file object over the fd the daemon sent; the caller owns it."""
    try:
        # x is the daemon's business (an atomic writer's publish): here the fd is just written
        f = io.open(fd, values["mode"].replace("x", "w"), buffering=values["buffering"],
                    encoding=values["encoding"], closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return f


def finish(spec: Spec, vals: tuple[Any, ...], reply: Reply, atomic: Any = None) -> Any:
    """A reply as the caller sees it (both clients): the file object for open(), the
    decoded result, or the exception; fds that came with anything else are closed.
    ``atomic(values, fd, handle)`` makes the file object of an atomic writer."""
    fds = reply.fds
    if spec.returns_fd and reply.error is None:
        if len(fds) != 1:
            close_fds(fds)
            raise OSError(71, "the daemon sent no fd with an open() reply")
        values = spec.values(vals)
        if values.get("atomic"):
            if reply.result.__class__ is not int or atomic is None:
                close_fds(fds)
                raise OSError(71, "the daemon sent no writer handle with an atomic open() reply")
            return atomic(values, fds[0], reply.result)
        return wrap_fd(values, fds[0])
    if fds:
        if spec.kind == "entries" and reply.error is None and len(fds) == 1:
            return spec.result(None, read_packed(fds[0], reply.result, spec.m), vals)
        close_fds(fds)
    return spec.result(reply.error, reply.result, vals)


def read_packed(fd: int, sizes: Any, m: Any) -> list[bytes]:
    """A big listing's packed form from the memfd the daemon passed (``sizes``: its four
    parts' lengths, one after the other from offset 0); the fd is closed. The fd must be a
    sealed regular file (memfd) exactly as long as the sizes say: anything else, a file the
    daemon could still change or one asking for more than it holds, is ``EPROTO``."""
    try:
        if sizes.__class__ is not list or len(sizes) != 4 or not all(n.__class__ is int and n >= 0 for n in sizes):
            raise _bad_result(m)
        total = sum(sizes)
        try:
            st = os.fstat(fd)
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError:
            raise _bad_result(m) from None
        want = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
        if not stat.S_ISREG(st.st_mode) or st.st_size != total or seals & want != want:
            raise _bad_result(m)
        if total == 0:
            return [b"", b"", b"", b""]
        with mmap.mmap(fd, total, prot=mmap.PROT_READ) as mm:  # (one copy of each part, no read loop)
            parts: list[bytes] = []
            off = 0
            for n in sizes:
                parts.append(mm[off:off + n])
                off += n
        return parts
    finally:
        os.close(fd)


def check_timeout(timeout: Any) -> float:
    """A call's ``timeout=`` as seconds (a bad one is refused before anything is sent)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError("timeout must be >= 0")
    return float(timeout)


def timed_out(spec: Spec, timeout: float) -> TimeoutError:
    """What a call that ran out of time raises (the daemon has been asked to stop it)."""
    return TimeoutError(errno.ETIMEDOUT, f"{spec.name}: no reply within {timeout:g} s; the daemon was asked "
                                         "to stop the call")


def call_options(spec: Spec, vals: tuple[Any, ...]) -> tuple[Any, dict[str, Any] | None]:
    """The ``progress`` callback of a call and the call options it needs on the wire."""
    if spec.progress_at is None:
        return None, spec.options
    progress = vals[spec.progress_at]
    if progress is None:
        return None, spec.options
    if not callable(progress):
        raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")
    return progress, {**(spec.options or {}), "progress": True}


def progress_of(data: Any) -> Progress | None:
    """A ``progress`` message's data as a Progress (None if malformed: it is skipped)."""
    if data.__class__ is list and len(data) == 2 and all(x.__class__ is int and x >= 0 for x in data):
        return Progress(data[0], data[1])
    return None


#: write_file payloads above this go through an atomic writer's fd instead of the request
#: (the bytes are written once, here, instead of being copied through the socket in frames
#: and the daemon running the write in a worker thread, which it does above 64 KiB: the
#: table's long limit). Measured through the daemon: 1 MiB 3.2 ms in the request, 1.1 ms
#: through the fd; 128 KiB 2.0 vs 1.3 ms; 64 KiB the same (0.75 ms).
BIG_WRITE = 64 * 1024


def _decode_names(names: list[bytes]) -> list[str]:
    """Names as os.fsdecode gives them, joined, decoded and split in three C calls (no UTF-8
    sequence spans a NUL, so the lot decodes as each would); a name holding a NUL (which no
    file system gives) splits into more and is refused."""
    if not names:
        return []
    out = b"\0".join(names).decode(_FSENC, _FSERR).split("\0")
    if len(out) != len(names):
        raise ValueError("a name with a NUL")
    return out


class WalkPages:
    """A streamed walk as the caller sees it: pages decoded to ``top``'s type, and
    top-down pruning (names removed from ``dirnames``) applied here, since the daemon walks
    ahead (what was pruned is skipped, not asked for)."""

    def __init__(self, spec: Spec, vals: tuple[Any, ...]) -> None:
        top = os.fspath(vals[0])
        self.as_bytes = isinstance(top, bytes)
        self.top_down = bool(vals[1])
        self.pruned: set[Any] = set()
        self.spec = spec
        self.progress = vals[spec.progress_at] if spec.progress_at is not None else None
        if self.progress is not None and not callable(self.progress):
            raise TypeError(f"progress must be callable or None, not {type(self.progress).__name__}")

    def tuples(self, data: Any) -> Any:
        if not isinstance(data, list):
            raise _bad_result(self.spec.m)
        dec = (lambda b: b) if self.as_bytes else os.fsdecode
        enc, errs = _FSENC, _FSERR
        for item in data:
            try:
                dp, dn, fn = item
                if self.as_bytes:
                    dirpath, dirnames, filenames = dp, list(dn), list(fn)
                    if dirpath.__class__ is not bytes or not all(n.__class__ is bytes for n in dn + fn):
                        raise TypeError
                else:  # a walk decodes every name of the tree: a page's names in one call
                    dirpath = dp.decode(enc, errs)
                    dirnames = _decode_names(dn)
                    filenames = _decode_names(fn)
            except (TypeError, ValueError, AttributeError):
                raise _bad_result(self.spec.m) from None
            if self.pruned and self._under(dirpath):
                continue
            yield dirpath, dirnames, filenames
            if self.top_down and len(dirnames) != len(dn):
                kept = set(dirnames)
                for n in dn:
                    name = dec(n)
                    if name not in kept:
                        self.pruned.add(name if dirpath in (".", b".") else os.path.join(dirpath, name))

    def _under(self, path: Any) -> bool:
        p = path
        while p:
            if p in self.pruned:
                return True
            parent = os.path.dirname(p)
            if parent == p:
                return False
            p = parent
        return False


_WATCH_KINDS = frozenset(WATCH_KINDS)


def watch_events(spec: Spec, data: Any, as_bytes: bool) -> list[WatchEvent]:
    """A ``watch`` page's events, paths in the caller's type (a malformed page: EPROTO)."""
    if data.__class__ is not list:
        raise _bad_result(spec.m)
    out = []
    for item in data:
        try:
            kind, path, is_dir, cookie = item
            if kind not in _WATCH_KINDS or path.__class__ is not bytes or is_dir.__class__ is not bool \
                    or cookie.__class__ is not int:
                raise TypeError
        except (TypeError, ValueError):
            raise _bad_result(spec.m) from None
        out.append(WatchEvent(kind, path if as_bytes else path.decode(_FSENC, _FSERR), is_dir, cookie))
    return out


def watch_ended(spec: Spec, vals: tuple[Any, ...], reply: Reply) -> OSError | None:
    """What the final reply of a watch says: None (its top went: the end), or its error."""
    close_fds(reply.fds)
    if reply.error is None:
        return None
    try:
        spec.result(reply.error, None, vals)
    except OSError as e:
        return e
    return None


class _Batched:
    """One call of a batch as the read-only rule sees it (``call_mutates``)."""

    __slots__ = ("method", "args", "at", "spec", "vals")

    def __init__(self, at: int, spec: Spec, vals: tuple[Any, ...]) -> None:
        self.at, self.spec, self.vals = at, spec, vals
        self.method = spec.m
        self.args = spec.values(vals)


class BatchPlan:
    """A batch as both clients send it: each call encoded by its own method's encoder
    (a call that cannot be encoded gets its exception in its slot and is not sent; with
    ``stop_on_error`` nothing after it is), and each reply slot decoded by its call's spec."""

    def __init__(self, calls: Any, stop_on_error: bool) -> None:
        from ._generated import ENCODERS  # (it imports this module)

        with gc_paused():
            self._encode(calls, stop_on_error, ENCODERS)

    def _encode(self, calls: Any, stop_on_error: bool, ENCODERS: Any) -> None:
        plan = batch_calls(calls)
        self.slots: list[Any] = [None] * len(plan)
        self.sent: list[_Batched] = []
        self.wire: list[list[Any]] = []
        for i, (name, args, kwargs) in enumerate(plan):
            try:
                vals, w = ENCODERS[name](*args, **kwargs)
            except Exception as e:  # returned in its slot, as Root returns what a call raises
                self.slots[i] = e
                if stop_on_error:
                    break
                continue
            self.sent.append(_Batched(i, SPECS[name], vals))
            self.wire.append([name, w])
        #: the batch method's values, for the read-only rule and the resend rule
        self.vals = (self.sent, bool(stop_on_error))

    def results(self, raw: Any) -> list[Any]:
        with gc_paused():
            return self._decode(raw)

    def _decode(self, raw: Any) -> list[Any]:
        if raw.__class__ is not list or len(raw) != len(self.sent):
            raise _bad_result(METHODS["batch"])
        for c, slot in zip(self.sent, raw):
            if slot is None:
                continue  # not run (stop_on_error)
            if slot.__class__ is not list or len(slot) != 2:
                raise _bad_result(METHODS["batch"])
            try:
                self.slots[c.at] = c.spec.result(slot[0], slot[1], c.vals)
            except Exception as e:
                self.slots[c.at] = e
        return self.slots


class ConnectionLost(ConnectionError):
    """The connection to the daemon broke under a call (``beneathd.client.ConnectionLost``).

    A call that changes nothing is sent again once on a new connection before this is
    raised; one that may change something (it may have run) is not. The message names the
    socket and the cause."""


def lost(cause: BaseException | None, conn: ClientConnection, path: Any) -> BaseException:
    """What a caller gets when its connection died under its call: the daemon's own error
    about the connection as it is (a refused peer, a request it could not read), else
    :class:`ConnectionLost` (which a call that changes nothing answers by sending again)."""
    if cause is not None and cause is conn.error:
        return cause
    return ConnectionLost(f"connection to beneathd at {path!r} broken: {cause}")
