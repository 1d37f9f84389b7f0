"""What the blocking and the async client share: the method generator and reply handling.

Every method of the table becomes a real Python function, generated once with ``exec``
from the table: a real signature (so a bad call raises ``TypeError`` exactly like a plain
function, with no ``inspect`` binding per call), then per-parameter encoding inlined for
its wire type.  A call hands its :class:`Spec` (precomputed per method), the caller's
argument values (a tuple, in table order) and the wire params to the client's ``_call``.

No trio and no compiled extension here.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
from typing import Any, Callable

from ..protocol.codec import _bad_result, decode_result, exception_from_reply, stat_from_wire
from ..protocol.methods import METHODS, Method
from ..protocol.modes import is_write_mode, open_flags

__all__ = ["signature_of", "Spec", "wrap_fd", "install_methods", "generate_method"]

_EMPTY = inspect.Parameter.empty
_FSENC = sys.getfilesystemencoding()
_FSERR = sys.getfilesystemencodeerrors()


def signature_of(m: Method) -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p in m.params:
        kind = inspect.Parameter.KEYWORD_ONLY if p.kwonly else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(p.name, kind, default=_EMPTY if p.required else p.default))
    return inspect.Signature(params)


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
    if b"\x00" in b:
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
        v = v.__index__()  # TypeError for non-integers, like os
    return int(v)


def _open_check(mode: Any, encoding: Any) -> None:
    open_flags(mode)  # ValueError/TypeError for a bad mode, before any I/O
    if "b" in mode and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")


# -- the per-method spec -----------------------------------------------------------------------


class Spec:
    """What a call of one method needs, computed once from the table."""

    __slots__ = ("m", "name", "names", "like", "kind", "returns_fd", "retry", "retry_mode")

    def __init__(self, m: Method) -> None:
        self.m = m
        self.name = m.name
        #: every parameter name (wire or not), in table order: the order of ``vals``
        self.names = tuple(p.name for p in m.params)
        #: index of the first path parameter (the type results echo), or None
        self.like = next((i for i, p in enumerate(m.params) if p.type == "path"), None)
        self.kind = m.result
        self.returns_fd = m.returns_fd
        #: may be sent again after a broken connection (changes nothing)
        self.retry = not m.mutates
        #: index of open()'s mode (a write mode is not retried), or None
        self.retry_mode = self.names.index("mode") if m.name == "open" else None

    def values(self, vals: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.names, vals))

    def retryable(self, vals: tuple[Any, ...]) -> bool:
        if not self.retry:
            return False
        if self.retry_mode is not None and is_write_mode(vals[self.retry_mode]):
            return False
        return True

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
        f = io.open(fd, values["mode"], buffering=values["buffering"], encoding=values["encoding"], closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return f


# -- code generation ---------------------------------------------------------------------------


def _encode_lines(m: Method) -> tuple[list[str], list[str], dict[str, Any]]:
    """Source lines encoding each wire parameter into ``w<i>``; the wire expressions; globals."""
    g: dict[str, Any] = {"_fs": _fs, "_data": _data, "_ns": _ns, "_int": _int, "_FSENC": _FSENC,
                         "_FSERR": _FSERR, "_fspath": os.fspath, "_open_check": _open_check}
    lines: list[str] = []
    if m.name == "open":
        lines.append("_open_check(mode, encoding)")
    wire: list[str] = []
    for i, p in enumerate(p for p in m.params if p.wire):
        v, w = p.name, f"w{i}"
        t = p.type
        if t == "path":
            # the caller's value is kept (os.fspath'd) for error filenames and str/bytes results
            lines += [
                f"if {v}.__class__ is str:",
                f"    {w} = {v}.encode(_FSENC, _FSERR)",
                f"    if '\\x00' in {v}: raise ValueError('embedded null byte')",
                f"elif {v}.__class__ is bytes:",
                f"    {w} = {v}",
                f"    if b'\\x00' in {v}: raise ValueError('embedded null byte')",
                "else:",
                f"    {v} = _fspath({v})",
                f"    {w} = _fs({v})",
            ]
        elif t == "text":
            lines.append(f"{w} = _fs({v})")
        elif t == "data":
            lines.append(f"{w} = {v} if {v}.__class__ is bytes else _data({m.name!r}, {v!r}, {v})")
        elif t == "ns":
            lines.append(f"{w} = None if {v} is None else _ns({m.name!r}, {v})")
        elif t == "int":
            lines.append(f"{w} = {v} if {v}.__class__ is int else _int({v})")
        elif t == "bool":
            lines.append(f"{w} = {v} if {v}.__class__ is bool else bool({v})")
        else:  # str, optstr, openmode: as given (the daemon validates)
            lines.append(f"{w} = {v}")
        wire.append(w)
    return lines, wire, g


def _signature_src(m: Method, g: dict[str, Any], with_self: bool) -> str:
    out = ["self"] if with_self else []
    star = False
    for i, p in enumerate(m.params):
        if p.kwonly and not star:
            out.append("*")
            star = True
        if p.required:
            out.append(p.name)
        else:
            g[f"_D{i}"] = p.default
            out.append(f"{p.name}=_D{i}")
    return ", ".join(out)


def _generate(m: Method, template: str, extra: dict[str, Any], with_self: bool = True) -> Callable[..., Any]:
    lines, wire, g = _encode_lines(m)
    g.update(extra)
    g["_SPEC"] = SPECS[m.name]
    sig = _signature_src(m, g, with_self)
    vals = "(" + "".join(f"{p.name}, " for p in m.params) + ")"
    body = "\n".join("    " + ln for ln in lines) or "    pass"
    src = template.format(name=m.name, sig=sig, body=body, vals=vals, wire="[" + ", ".join(wire) + "]")
    exec(compile(src, f"<beneathd.client {m.name}>", "exec"), g)
    return g[m.name]  # type: ignore[no-any-return]


_ENCODER_TEMPLATE = """\
def {name}({sig}):
{body}
    return {vals}, {wire}
"""

#: name -> encode(*args, **kwargs) -> (vals, wire): the argument handling alone
ENCODERS: dict[str, Callable[..., Any]] = {}
for _m in METHODS.values():
    ENCODERS[_m.name] = _generate(_m, _ENCODER_TEMPLATE, {}, with_self=False)
del _m


def generate_method(m: Method, template: str, extra: dict[str, Any] | None = None) -> Callable[..., Any]:
    """A method generated from ``template`` (with ``{name} {sig} {body} {vals} {wire}``)."""
    return _generate(m, template, dict(extra or {}))


def install_methods(cls: type, make: Callable[[Method, inspect.Signature], Callable[..., Any]]) -> type:
    """Add one generated method per entry of the method table to ``cls``."""
    for m in METHODS.values():
        sig = signature_of(m)
        fn = make(m, sig)
        fn.__name__ = m.name
        fn.__qualname__ = f"{cls.__name__}.{m.name}"
        fn.__signature__ = sig  # type: ignore[attr-defined]
        fn.__doc__ = f"{m.doc}." if m.doc else m.name
        setattr(cls, m.name, fn)
    return cls
