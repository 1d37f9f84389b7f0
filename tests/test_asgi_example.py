"""docs/asgi_example.py through Starlette's ASGI test client (asyncio): a listing, a
streamed download from the daemon's fd, an escape refused."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backends import server_thread

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx`")
pytest.importorskip("starlette")
pytest.importorskip("httpx")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))

from asgi_example import make_app  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402


def test_listing_download_and_escape(root_dir: Path, outside: Path) -> None:
    os.makedirs(root_dir / "src")
    (root_dir / "src" / "a.txt").write_bytes(b"hello")
    os.symlink("a.txt", root_dir / "src" / "l")
    big = os.urandom(3 * 1024 * 1024 + 7)
    (root_dir / "big.bin").write_bytes(big)
    os.symlink(str(outside), root_dir / "out")
    with server_thread(root_dir) as sock, TestClient(make_app(sock)) as http:
        r = http.get("/ls", params={"path": "src"})
        assert r.status_code == 200
        got = sorted(r.json(), key=lambda e: e["name"])
        assert got == [{"name": "a.txt", "dir": False, "link": False, "size": 5, "link_target": None},
                       {"name": "l", "dir": False, "link": True, "size": 5, "link_target": "a.txt"}]
        r = http.get("/download", params={"path": "big.bin"})
        assert r.status_code == 200 and r.content == big and r.headers["content-length"] == str(len(big))
        assert http.get("/download", params={"path": "out/secret"}).status_code == 403
        assert http.get("/ls", params={"path": "out"}).status_code == 403
        assert http.get("/ls", params={"path": "nope"}).status_code == 404
