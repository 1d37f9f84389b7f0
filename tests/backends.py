"""The backends one test suite runs through: ``Root`` in-process, ``Client`` and ``AsyncClient``
(and ``Root``, ``Client`` again with the emulated resolver).

Each backend is a context manager factory ``make(root_dir, **root_kw) -> ContextManager[fs]``
(``root_kw`` go to ``Root``, e.g. ``no_xdev=True``) where
``fs`` has the synchronous ``Root`` API (the async client is driven through a blocking
adapter so the same test bodies run unchanged).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

BACKENDS: dict[str, Callable[..., ContextManager[Any]]] = {}


def backend(name: str) -> Callable[[Callable[..., ContextManager[Any]]], Callable[..., ContextManager[Any]]]:
    def deco(fn: Callable[..., ContextManager[Any]]) -> Callable[..., ContextManager[Any]]:
        BACKENDS[name] = fn
        return fn

    return deco


@backend("root")
@contextlib.contextmanager
def _root(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    from beneathd.daemon import Root

    with Root(str(root_dir), **root_kw) as fs:
        yield fs


# -- the daemon backends: a real server on a real socket ---------------------------------------


@contextlib.contextmanager
def server_thread(root_dir: Path, root_kw: dict[str, Any] | None = None, **config: Any) -> Iterator[str]:
    """An in-process daemon (``Server`` over ``Root``) on a fresh socket, run by trio in a
    thread, without privilege drop (the tests run as root).  Yields the socket path.

    The real CLI (``python -m beneathd.daemon``, privilege drop and all) is exercised by
    tests/test_daemon.py; this keeps the shared suites fast and its files owned as with Root.
    """
    import os
    import shutil
    import socket
    import tempfile
    import threading

    import trio

    from beneathd.daemon import Root
    from beneathd.daemon.auth import Policy
    from beneathd.daemon.server import Server, ServerConfig

    sockdir = tempfile.mkdtemp(prefix="beneathd-sock-")
    path = os.path.join(sockdir, "s")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    lsock.bind(path)
    lsock.listen(64)
    root = Root(str(root_dir), **(root_kw or {}))
    config.setdefault("policy", Policy({os.geteuid()}))
    server = Server(root, lsock, ServerConfig(**config))
    state: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            state["token"] = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as cs:
                state["cs"] = cs
                async with trio.open_nursery() as n:
                    await n.start(server.serve)
                    ready.set()

        try:
            trio.run(main)
        except BaseException as e:  # pragma: no cover
            state["error"] = e
        finally:
            ready.set()

    t = threading.Thread(target=run, name="beneathd-server", daemon=True)
    t.start()
    ready.wait(10)
    if "error" in state:  # pragma: no cover
        raise state["error"]
    try:
        yield path
    finally:
        trio.from_thread.run_sync(state["cs"].cancel, trio_token=state["token"])
        t.join(10)
        lsock.close()
        root.close()
        shutil.rmtree(sockdir, ignore_errors=True)


class AsyncAdapter:
    """The synchronous ``Root`` API over an ``AsyncClient`` driven by an event loop in a
    thread: trio, or asyncio (``loop``), through anyio."""

    def __init__(self, socket_path: str, loop: str = "trio") -> None:
        import threading

        import anyio
        import anyio.from_thread
        import anyio.lowlevel

        from beneathd.client import AsyncClient

        self._anyio = anyio
        self._state: dict[str, Any] = {}
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                async with AsyncClient(socket_path) as c:
                    self._state["client"] = c
                    self._state["token"] = anyio.lowlevel.current_token()
                    self._state["stop"] = anyio.Event()
                    ready.set()
                    await self._state["stop"].wait()

            try:
                anyio.run(main, backend=loop)
            except BaseException as e:  # pragma: no cover
                self._state["error"] = e
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name=f"beneathd-async-client-{loop}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if "error" in self._state:
            raise self._state["error"]

    def __getattr__(self, name: str) -> Any:
        import functools

        from beneathd.protocol import METHODS

        if name not in METHODS:
            raise AttributeError(name)
        fn = getattr(self._state["client"], name)
        if name == "watch":
            return lambda *a, **k: SyncWatch(self._run(fn(*a, **k).start), self._run)
        if METHODS[name].streams:
            return functools.partial(self._iterate, fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = self._anyio.from_thread.run(functools.partial(fn, *args, **kwargs), token=self._state["token"])
            if kwargs.get("atomic"):
                return SyncAtomic(out, self._run)
            return out

        call.__name__ = name
        return call

    def _iterate(self, fn: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """An async iterator (walk) pulled item by item from the client's loop."""
        agen = fn(*args, **kwargs)
        try:
            while True:
                try:
                    yield self._run(agen.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._run(agen.aclose)

    def _run(self, afn: Any) -> Any:
        return self._anyio.from_thread.run(afn, token=self._state["token"])

    def close(self) -> None:
        if self._thread.is_alive():
            self._anyio.from_thread.run_sync(self._state["stop"].set, token=self._state["token"])
            self._thread.join(10)

    def __enter__(self) -> "AsyncAdapter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncWatch:
    """An AsyncClient watch used from a thread: ``next`` and ``close`` run on its loop."""

    def __init__(self, aw: Any, run: Callable[[Any], Any]) -> None:
        self._aw = aw
        self._run = run

    def next(self, timeout: float | None = None) -> Any:
        import functools

        try:
            return self._run(functools.partial(self._aw.next, timeout))
        except StopAsyncIteration:
            raise StopIteration from None

    def __iter__(self) -> "SyncWatch":
        return self

    def __next__(self) -> Any:
        return self.next()

    def close(self) -> None:
        self._run(self._aw.aclose)

    def __enter__(self) -> "SyncWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncAtomic:
    """An AsyncClient atomic writer used from a thread: ``close`` / ``discard`` run
    ``aclose`` / ``discard`` on the client's loop (the same test bodies run unchanged)."""

    def __init__(self, af: Any, run: Callable[[Any], Any]) -> None:
        self._af = af
        self._run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._af, name)

    def close(self) -> None:
        self._run(self._af.aclose)

    def discard(self) -> None:
        self._run(self._af.discard)

    def __enter__(self) -> "SyncAtomic":
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


@backend("client")
@contextlib.contextmanager
def _client(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    from beneathd.client import Client

    with server_thread(root_dir, root_kw) as path, Client(path) as fs:
        yield fs


@backend("async")
@contextlib.contextmanager
def _async(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    with server_thread(root_dir, root_kw) as path, AsyncAdapter(path) as fs:
        yield fs


@backend("asyncio")
@contextlib.contextmanager
def _asyncio(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    """AsyncClient under asyncio (the same client, the other event loop)."""
    with server_thread(root_dir, root_kw) as path, AsyncAdapter(path, loop="asyncio") as fs:
        yield fs


# -- the emulated resolver (DESIGN.md, "Resolvers"): every shared suite runs under it too ---------


@backend("root-emulated")
@contextlib.contextmanager
def _root_emulated(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    """``Root(resolver="emulated")`` in-process: no openat2 at all."""
    with _root(root_dir, **{"resolver": "emulated", **root_kw}) as fs:
        yield fs


@backend("client-emulated")
@contextlib.contextmanager
def _client_emulated(root_dir: Path, **root_kw: Any) -> Iterator[Any]:
    """A daemon whose ``Root`` uses the emulated resolver, through ``Client``."""
    with _client(root_dir, **{"resolver": "emulated", **root_kw}) as fs:
        yield fs
