"""Clients of a beneathd daemon: ``Client`` (blocking) and ``AsyncClient`` (trio).

``from beneathd.client import Client`` imports neither trio nor the compiled extension;
``AsyncClient`` is resolved lazily.
"""

from __future__ import annotations

from typing import Any

from ..protocol.errors import EscapeError
from ..protocol.types import AtomicFile, Progress
from ._common import ConnectionLost
from ._sync import Client, Pending

__all__ = ["Client", "AsyncClient", "EscapeError", "Pending", "ConnectionLost", "Progress", "AtomicFile"]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from ._async import AsyncClient

        globals()["AsyncClient"] = AsyncClient
        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
