"""A small Starlette app over beneathd (an example, not part of the package).

    pip install 'beneathd[asgi]' uvicorn
    BENEATHD_SOCKET=/run/beneathd/p1.sock uvicorn --factory asgi_example:app_from_env

``GET /ls?path=src`` lists a directory (one ``scandir``: each entry's kind, size and link
text); ``GET /download?path=big.tar`` streams a file from the fd the daemon passed back
(``open()``: the bytes never cross the daemon's socket). The project user's symlinks
cannot make it serve anything outside the root: an escape is a 403.
tests/test_asgi_example.py runs it with Starlette's test client, on asyncio.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from beneathd.client import AsyncClient, EscapeError

CHUNK = 1 << 20


def _error(e: OSError) -> JSONResponse:
    status = 403 if isinstance(e, (EscapeError, PermissionError)) else 404 if isinstance(e, FileNotFoundError) else 400
    return JSONResponse({"error": e.strerror or str(e), "path": e.filename}, status_code=status)


def make_app(socket_path: str) -> Starlette:
    client = AsyncClient(socket_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with client:  # one connection for the app, pipelined by every request
            yield

    async def ls(request: Request) -> Response:
        path = request.query_params.get("path", ".")
        try:
            entries = await client.scandir(path)
        except OSError as e:
            return _error(e)
        return JSONResponse([{"name": e.name, "dir": e.is_dir(follow_symlinks=False), "link": e.is_symlink(),
                              "size": e.stat(follow_symlinks=False).st_size, "link_target": e.link_target}
                             for e in entries])

    async def download(request: Request) -> Response:
        path = request.query_params.get("path", "")
        try:
            f = await client.open(path, "rb", buffering=0)
        except OSError as e:
            return _error(e)
        size = os.fstat(f.fileno()).st_size

        async def body() -> AsyncIterator[bytes]:
            with f:
                while chunk := await anyio.to_thread.run_sync(f.read, CHUNK):
                    yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"content-length": str(size)})

    return Starlette(routes=[Route("/ls", ls), Route("/download", download)], lifespan=lifespan)


def app_from_env() -> Any:
    return make_app(os.environ["BENEATHD_SOCKET"])
