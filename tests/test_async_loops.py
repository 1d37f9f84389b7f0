"""``AsyncClient`` directly inside each event loop it supports (trio and asyncio, through
anyio), not through the thread adapter: the escape table, pipelining and cancellation, fds
passed back, ``async with``/``aclose``, the fast path's cancelled half-sent request.

(The shared suites also run over both loops through tests/backends.py's ``async`` and
``asyncio`` backends.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

import test_escape as te
from backends import server_thread
from beneathd.client import AsyncClient
from beneathd.protocol.codec import MAX_FRAME
from conftest import snapshot

LOOPS = ["trio", "asyncio", "uvloop"]


def _run(fn: Any, *args: Any, loop: str) -> Any:
    """``fn(*args)`` in that event loop (uvloop: asyncio on uvloop's loop, if installed)."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return anyio.run(fn, *args, backend="asyncio", backend_options={"loop_factory": uvloop.new_event_loop})
    return anyio.run(fn, *args, backend=loop)


async def _run_recorded(c: AsyncClient, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
    """What a row of the escape table calls, awaited on the client."""
    for name, args, kwargs in calls:
        if name == "walk":
            [t async for t in c.walk(*args, **kwargs)]
        elif name == "watch":
            async with c.watch(*args, **kwargs):
                pass
        elif name == "open":
            f = await c.open(*args, **kwargs)
            try:
                mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
                if any(ch in mode for ch in "wax+"):
                    f.write(b"pwned" if "b" in mode else "pwned")
            finally:
                if kwargs.get("atomic"):
                    await f.aclose()
                else:
                    f.close()
        else:
            await getattr(c, name)(*args, **kwargs)


@pytest.mark.parametrize("loop", LOOPS)
def test_escape_table_inside_the_loop(loop: str, root_dir: Path, outside: Path) -> None:
    failures: list[str] = []

    async def main(sock: str) -> None:
        base = snapshot(outside)
        async with AsyncClient(sock) as c:
            for op, (kind, call) in sorted(te.OPS.items()):
                for name, cls, path in te.cases(root_dir, outside):
                    te.build_tree(root_dir, outside)
                    rec = te._Recorder()
                    call(rec, path)
                    try:
                        await _run_recorded(c, rec.calls)
                        exc: BaseException | None = None
                    except Exception as e:  # noqa: BLE001
                        exc = e
                    allowed = te.expected(op, kind, cls)
                    if not te._ok(exc, allowed):
                        failures.append(f"{op}[{name}:{cls}] {path!r}: got {te.describe(exc)}, want {sorted(allowed)}")
                    after = snapshot(outside)
                    if after != base:
                        failures.append(f"{op}[{name}:{cls}] {path!r}: OUTSIDE CHANGED (escape!)")
                        te.build_outside(outside)
                        base = snapshot(outside)

    with server_thread(root_dir) as sock:
        _run(main, sock, loop=loop)
    assert not failures, "\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelined_tasks_fds_and_cancellation(loop: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    os.makedirs(tmp_path / "tree")
    for i in range(200):
        os.makedirs(tmp_path / "tree" / f"d{i}" / "x")

    async def main(path: str) -> None:
        async with AsyncClient(path) as c:
            sizes: list[int] = []

            async def one(i: int) -> None:
                if i % 5 == 0:
                    sizes.append(len(await c.read_file("f")))
                else:
                    sizes.append((await c.stat("f")).st_size)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
            assert sizes == [3] * 200
            f = await c.open("f", "rb")  # the fd the daemon passed
            assert f.read() == b"abc" and os.fstat(f.fileno()).st_size == 3
            f.close()
            with anyio.move_on_after(0):  # a cancelled call leaves the client usable
                await c.stat("f")
            assert (await c.stat("f")).st_size == 3
            # a cancelled task stops the daemon's work: cp -r leaves a partial copy
            with anyio.move_on_after(0.01):
                await c.cp("tree", "copy", recursive=True)
            n = len(os.listdir(tmp_path / "copy")) if (tmp_path / "copy").exists() else 0
            assert (await c.exists("f")) is True
            assert n < 200 or (tmp_path / "copy").exists()
            async with c.watch(".") as w:
                (tmp_path / "new").write_bytes(b"")
                ev = await w.next(timeout=20)
                while ev.path != "new":
                    ev = await w.next(timeout=20)
            assert (await c.batch([("stat", "f"), ("stat", "nope")]))[0].st_size == 3
        assert c.closed

    with server_thread(tmp_path) as path:
        _run(main, path, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_request_cancelled_half_sent_breaks_the_connection(loop: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A request of several frames cancelled between two of them must not leave half a
    message on the socket: the connection is dropped (the listener never reads)."""
    import beneathd.client._common as common

    monkeypatch.setattr(common, "BIG_WRITE", 1 << 30)  # a request of many frames
    path = str(tmp_path / "s")
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lst.bind(path)
    lst.listen(4)
    accepted: list[socket.socket] = []

    async def main() -> None:
        fs = AsyncClient(path)
        await fs.connect()
        accepted.append(lst.accept()[0])
        with anyio.move_on_after(0.5) as cs:
            await fs.write_file("big", b"x" * (15 * MAX_FRAME))
        assert cs.cancelled_caught
        assert isinstance(fs._broken, ConnectionError) and "half-sent" in str(fs._broken)
        await fs.aclose()

    try:
        _run(main, loop=loop)
    finally:
        for s in accepted:
            s.close()
        lst.close()
