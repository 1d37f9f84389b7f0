"""Shared fixtures: a project root, a sentinel tree outside it, and ``fs`` over every backend."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from backends import BACKENDS


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


def snapshot(path: Path) -> dict[str, Any]:
    """Names, types, modes, sizes, mtimes and contents of everything under path (itself included)."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rec: tuple[Any, ...] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, st.st_uid)
            if os.path.isfile(p) and not os.path.islink(p):
                rec += (hashlib.sha256(Path(p).read_bytes()).hexdigest(),)
            elif os.path.islink(p):
                rec += (os.readlink(p),)
            out[os.path.relpath(p, path)] = rec
    return out


@pytest.fixture(params=sorted(BACKENDS))
def fs(request: pytest.FixtureRequest, root_dir: Path) -> Iterator[Any]:
    """The Root API over each backend, on ``root_dir``."""
    with BACKENDS[request.param](root_dir) as f:
        yield f
