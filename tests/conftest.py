"""Shared fixtures: a project root, a sentinel tree outside it, and ``fs`` over every backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from backends import BACKENDS
from race_harness import snapshot

__all__ = ["snapshot"]  # one snapshot for every suite (names, modes, sizes, times, contents)


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A sentinel tree beside the root that no operation may ever change."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_bytes(b"top secret\n")
    (d / "dir").mkdir()
    (d / "dir" / "file").write_bytes(b"inner\n")
    os.chmod(d / "secret", 0o640)
    return d


@pytest.fixture(params=sorted(BACKENDS))
def fs(request: pytest.FixtureRequest, root_dir: Path) -> Iterator[Any]:
    """The Root API over each backend, on ``root_dir``."""
    with BACKENDS[request.param](root_dir) as f:
        yield f
