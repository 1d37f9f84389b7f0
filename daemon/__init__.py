"""The daemon side: ``Root`` (in-process operations beneath a dirfd), the server and its CLI."""

from .root import OpenAt2Unavailable, Root

__all__ = ["Root", "OpenAt2Unavailable"]
