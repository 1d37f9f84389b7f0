"""Exceptions shared by every side: ``EscapeError`` and the errno <-> exception mapping.

Errors are Python's own ``OSError`` subclasses, chosen from the errno exactly as
``OSError(errno, ...)`` does, with ``.filename`` (and ``.filename2``) set to the
caller's path.  An escape is ``EscapeError``, a ``PermissionError`` with ``errno.EXDEV``.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

__all__ = ["EscapeError", "ESCAPE_CODE", "make_error", "error_to_wire", "error_from_wire"]

#: The wire ``code`` of an escape (not an errno name: EXDEV alone is also a cross-mount rename).
ESCAPE_CODE = "EESCAPE"

ESCAPE_MESSAGE = "path escapes the root"


class EscapeError(PermissionError):
    """A path resolved (or tried to resolve) outside the root.

    ``errno`` is ``errno.EXDEV``, which is what ``openat2(RESOLVE_BENEATH)`` reports.
    """

    def __init__(self, filename: Any = None, filename2: Any = None, message: str = ESCAPE_MESSAGE) -> None:
        if filename2 is not None:
            super().__init__(_errno.EXDEV, message, filename, None, filename2)
        else:
            super().__init__(_errno.EXDEV, message, filename)

    def __reduce__(self) -> Any:
        return (type(self), (self.filename, self.filename2, self.strerror))


def make_error(err: int, filename: Any = None, filename2: Any = None, message: str | None = None) -> OSError:
    """The ``OSError`` subclass Python itself would raise for ``err``, naming the caller's path(s)."""
    msg = message if message is not None else os.strerror(err)
    if filename2 is not None:
        return OSError(err, msg, filename, None, filename2)
    if filename is not None:
        return OSError(err, msg, filename)
    return OSError(err, msg)


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """The wire form of an error: ``{"errno", "code", "message"}``."""
    if isinstance(exc, EscapeError):
        return {"errno": _errno.EXDEV, "code": ESCAPE_CODE, "message": exc.strerror or ESCAPE_MESSAGE}
    if isinstance(exc, OSError) and exc.errno:
        return {
            "errno": exc.errno,
            "code": _errno.errorcode.get(exc.errno, "EIO"),
            "message": exc.strerror or os.strerror(exc.errno),
        }
    if isinstance(exc, (TypeError, ValueError)):
        return {"errno": _errno.EINVAL, "code": "EINVAL", "message": f"{type(exc).__name__}: {exc}"}
    return {"errno": _errno.EIO, "code": "EIO", "message": f"internal error: {type(exc).__name__}"}


def error_from_wire(err: Any, filename: Any = None, filename2: Any = None) -> OSError:
    """Rebuild the exception from a wire error map, naming the caller's own path(s)."""
    if not isinstance(err, dict):
        return OSError(_errno.EPROTO, f"malformed error reply: {err!r}")
    code = err.get("code")
    num = err.get("errno")
    message = err.get("message")
    if not isinstance(message, str):
        message = None
    if code == ESCAPE_CODE:
        return EscapeError(filename, filename2, message or ESCAPE_MESSAGE)
    if not isinstance(num, int) or num <= 0:
        num = getattr(_errno, code, _errno.EIO) if isinstance(code, str) else _errno.EIO
    return make_error(num, filename, filename2, message)
