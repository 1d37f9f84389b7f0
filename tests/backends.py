"""The backends one test suite runs through: ``Root`` in-process, ``Client`` and ``AsyncClient``.

Each backend is a context manager factory ``make(root_dir) -> ContextManager[fs]`` where
``fs`` has the synchronous ``Root`` API (the async client is driven through a blocking
adapter so the same test bodies run unchanged).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

BACKENDS: dict[str, Callable[[Path], ContextManager[Any]]] = {}


def backend(name: str) -> Callable[[Callable[[Path], ContextManager[Any]]], Callable[[Path], ContextManager[Any]]]:
    def deco(fn: Callable[[Path], ContextManager[Any]]) -> Callable[[Path], ContextManager[Any]]:
        BACKENDS[name] = fn
        return fn

    return deco


@backend("root")
@contextlib.contextmanager
def _root(root_dir: Path) -> Iterator[Any]:
    from beneathd.daemon import Root

    with Root(str(root_dir)) as fs:
        yield fs
