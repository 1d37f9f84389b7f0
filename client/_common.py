"""What the blocking and the async client share: the method generator and reply handling.

No trio and no compiled extension here.
"""

from __future__ import annotations

import inspect
import io
import os
from typing import Any, Callable

from ..protocol.codec import decode_result, encode_params, exception_from_reply
from ..protocol.methods import METHODS, Method
from ..protocol.modes import is_write_mode, open_flags

__all__ = ["signature_of", "prepare", "finish", "wrap_fd", "install_methods", "retryable"]

_EMPTY = inspect.Parameter.empty


def signature_of(m: Method) -> inspect.Signature:
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for p in m.params:
        kind = inspect.Parameter.KEYWORD_ONLY if p.kwonly else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(p.name, kind, default=_EMPTY if p.required else p.default))
    return inspect.Signature(params)


def prepare(m: Method, sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Bind the caller's arguments (TypeError like a real function) and build the wire params."""
    bound = sig.bind(None, *args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    values.pop("self", None)
    for p in m.params:
        if p.type == "path":
            values[p.name] = os.fspath(values[p.name]) if not isinstance(values[p.name], (str, bytes)) else values[p.name]
    if m.name == "open":
        mode = values["mode"]
        open_flags(mode)  # ValueError/TypeError for a bad mode, before any I/O
        if "b" in mode and values["encoding"] is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
    return values, encode_params(m, values)


def finish(m: Method, values: dict[str, Any], error: Any, result: Any) -> Any:
    """The Python value of a reply, or raise the exception it carries."""
    if error is not None:
        raise exception_from_reply(error, m, values)
    like = None
    for p in m.params:
        if p.type == "path":
            like = values[p.name]
            break
    return decode_result(m, result, like)


def wrap_fd(values: dict[str, Any], fd: int) -> Any:
    """``open()``'s file object over the fd the daemon sent; the caller owns it."""
    try:
        f = io.open(fd, values["mode"], buffering=values["buffering"], encoding=values["encoding"], closefd=True)
    except BaseException:
        os.close(fd)
        raise
    return f


def retryable(m: Method, values: dict[str, Any]) -> bool:
    """May this call be sent again after a broken connection (it changes nothing)?"""
    if m.mutates:
        return False
    if m.name == "open" and is_write_mode(values["mode"]):
        return False
    return True


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
