"""Sans-I/O wire protocol shared by the daemon and the clients (no sockets, no trio)."""

from .errors import ESCAPE_CODE, EscapeError, error_from_wire, error_to_wire, make_error
from .methods import METHODS, MUTATING, READ_ONLY, Method, Param

__all__ = [
    "ESCAPE_CODE",
    "EscapeError",
    "error_from_wire",
    "error_to_wire",
    "make_error",
    "METHODS",
    "MUTATING",
    "READ_ONLY",
    "Method",
    "Param",
]
