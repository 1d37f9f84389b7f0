"""Sans-I/O wire protocol shared by the daemon and the clients (no sockets, no trio)."""

from .errors import ESCAPE_CODE, EscapeError, error_from_wire, error_to_wire, make_error
from .methods import METHODS, MUTATING, READ_ONLY, Method, Param
from .types import DirEntry, stat_from_list, stat_to_list
from .codec import MAX_FRAME, MAX_MESSAGE, Limits, ProtocolError

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
    "DirEntry",
    "stat_from_list",
    "stat_to_list",
    "MAX_FRAME",
    "MAX_MESSAGE",
    "Limits",
    "ProtocolError",
]
