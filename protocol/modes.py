"""``open()`` mode strings to ``os.O_*`` flags, shared by ``Root`` and the daemon."""

from __future__ import annotations

import os

__all__ = ["open_flags", "is_write_mode"]


def open_flags(mode: str) -> int:
    """The ``os.open`` flags for a Python ``open()`` mode, validated as ``io.open`` does."""
    if not isinstance(mode, str):
        raise TypeError(f"open() mode must be str, not {type(mode).__name__}")
    chars = set(mode)
    if len(chars) != len(mode) or not chars <= set("rwaxbt+") or ("b" in chars and "t" in chars):
        raise ValueError(f"invalid mode: {mode!r}")
    kinds = chars & set("rwax")
    if len(kinds) != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    kind = kinds.pop()
    plus = "+" in chars
    if kind == "r":
        flags = os.O_RDWR if plus else os.O_RDONLY
    else:
        flags = (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT
        flags |= {"w": os.O_TRUNC, "a": os.O_APPEND, "x": os.O_EXCL}[kind]
    return flags | os.O_CLOEXEC


def is_write_mode(mode: str) -> bool:
    """True if ``mode`` can change the tree (w, a, x or +)."""
    return bool(set(mode) & set("wax+"))
