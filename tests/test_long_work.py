"""Long work can be watched and stopped (DESIGN.md "Progress", "Cancellation and deadlines").

``progress=`` on cp, rm, copy_file and move over Root, Client and AsyncClient; a ``Job``
cancelled from another thread; ``timeout=`` on the clients; a cancelled AsyncClient task;
the version 2 wire exchange by hand (progress messages, the cancel notification) and the
version 1 exchange unchanged; a peer that disconnects cancels its calls.

Whether a call stopped is judged by what it left, not by a clock: the trees are big
enough that a cancel that did nothing would let the copy finish, so a test that sees a
whole copy fails. Latencies are printed (p50/p99 of 20 runs), not asserted; the figures
for bench/RESULTS.md come from ``python -m bench.bench_cancel``.
"""

from __future__ import annotations

import errno
import os
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
import trio

from _util import tmpfs
from backends import BACKENDS, server_thread
from beneathd.client import AsyncClient, Client
from beneathd.daemon import Root
from beneathd.daemon.root import Job
from beneathd.protocol.codec import MAX_FRAME
from beneathd.protocol.types import Progress

DIRS, FILES = 100, 100  # 10,100 entries below the top: a copy takes a noticeable while


def _build(top: Path, dirs: int = DIRS, files: int = FILES) -> int:
    """A tree of ``dirs`` directories of ``files`` small files; returns its entry count
    (the top included, as cp and rm count it)."""
    top.mkdir()
    for d in range(dirs):
        sub = top / f"d{d:03}"
        sub.mkdir()
        for f in range(files):
            (sub / f"f{f:03}").write_bytes(b"x" * 100)
    return 1 + dirs * (files + 1)


def _count(top: Path) -> int:
    if not top.exists():
        return 0
    return 1 + sum(len(ds) + len(fs) for _, ds, fs in os.walk(top))


def _settled(top: Path) -> int:
    """The entry count once nothing writes there any more (a stopped call)."""
    last = -1
    while True:
        n = _count(top)
        if n == last:
            return n
        last = n
        time.sleep(0.3)


@pytest.fixture
def big(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    with tmpfs(tmp_path / "r") as r:
        yield r, _build(r / "src")


def _check_progress(seen: list[Progress], total_entries: int) -> None:
    assert seen, "progress was never called"
    assert all(isinstance(p, Progress) for p in seen)
    assert all(a.entries <= b.entries and a.bytes <= b.bytes for a, b in zip(seen, seen[1:])), seen
    assert seen[-1].entries == total_entries, (seen[-1], total_entries)


# -- progress, over every backend ---------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_progress_of_cp_and_rm(big: tuple[Path, int], backend: str) -> None:
    r, total = big
    seen: list[Progress] = []
    with BACKENDS[backend](r) as fs:
        t0 = time.monotonic()
        fs.cp("src", "copy", recursive=True, progress=seen.append)
        took = time.monotonic() - t0
        _check_progress(seen, total)
        assert seen[-1].bytes == DIRS * FILES * 100
        assert len(seen) <= took / 0.1 + 2, f"{len(seen)} calls in {took:.2f} s: more than every 100 ms"
        assert _count(r / "copy") == total
        seen.clear()
        fs.rm("copy", recursive=True, progress=seen.append)
        _check_progress(seen, total)
        assert not (r / "copy").exists()
        seen.clear()
        fs.rm("src/d000/f000", progress=seen.append)  # one name: one call at the end
        assert seen == [Progress(1, 0)]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_progress_of_copy_file_counts_bytes(tmp_path: Path, backend: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "f").write_bytes(data)
    seen: list[Progress] = []
    with BACKENDS[backend](tmp_path) as fs:
        fs.copy_file("f", "g", progress=seen.append, reflink="never")
        assert seen[-1] == Progress(1, len(data))
        seen.clear()
        fs.move("g", "h", progress=seen.append)  # a rename: nothing to count, a call at the end
        # (and one every 100 ms before it, if the rename takes that long on a loaded machine)
        assert seen and all(p == Progress(0, 0) for p in seen), seen
    assert (tmp_path / "h").read_bytes() == data


def test_progress_must_be_callable(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with Root(tmp_path) as fs, pytest.raises(TypeError, match="progress"):
        fs.copy_file("f", "g", progress=42)  # type: ignore[arg-type]
    with server_thread(tmp_path) as path, Client(path) as c, pytest.raises(TypeError, match="progress"):
        c.copy_file("f", "g", progress=42)  # type: ignore[arg-type]
    assert not (tmp_path / "g").exists()


def test_progress_callback_that_raises_stops_the_call(big: tuple[Path, int]) -> None:
    r, total = big

    def stop(p: Progress) -> None:
        raise KeyboardInterrupt

    with Root(r) as fs, pytest.raises(KeyboardInterrupt):
        fs.cp("src", "copy", recursive=True, progress=stop)
    assert 0 < _settled(r / "copy") < total
    with server_thread(r) as path, Client(path) as c:
        with pytest.raises(KeyboardInterrupt):
            c.cp("src", "copy2", recursive=True, progress=stop)
        assert 0 < _settled(r / "copy2") < total
        assert c.exists("src")  # the connection is still good


# -- cancellation -----------------------------------------------------------------------------


def _latencies(label: str, values: list[float]) -> None:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    print(f"\n{label}: cancel -> stopped, {len(values)} runs: p50 {statistics.median(values) * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms")


def test_job_cancel_stops_cp_rm_and_copy_file_in_process(big: tuple[Path, int]) -> None:
    """Root with a Job cancelled from another thread: OSError(ECANCELED); cp -r leaves
    what it copied, rm -r what it had not removed, copy_file publishes nothing."""
    r, total = big
    with Root(r) as fs:
        took = []
        for i in range(20):
            job = Job()
            out: list[BaseException] = []

            def run() -> None:
                try:
                    fs.cp("src", f"c{i}", recursive=True, job=job)
                except BaseException as e:
                    out.append(e)

            t = threading.Thread(target=run)
            t.start()
            while job.progress.entries < 200 and t.is_alive():
                time.sleep(0.001)
            t0 = time.monotonic()
            job.cancel()
            t.join()
            took.append(time.monotonic() - t0)
            assert out and isinstance(out[0], OSError) and out[0].errno == errno.ECANCELED, out
            assert 0 < _count(r / f"c{i}") < total
            fs.rm(f"c{i}", recursive=True)
        _latencies("Root.cp(recursive=True), 10k entries", took)

        fs.cp("src", "victim", recursive=True)
        job = Job()
        threading.Timer(0.05, job.cancel).start()
        with pytest.raises(OSError) as ei:
            while True:  # until the timer fires mid-walk
                fs.rm("victim", recursive=True, job=job)
                fs.cp("src", "victim", recursive=True)
        assert ei.value.errno == errno.ECANCELED and ei.value.filename in ("victim", "src")

        (r / "big").write_bytes(b"\0" * (256 << 20))
        job = Job()
        job.cancel()
        with pytest.raises(OSError) as ei:
            fs.copy_file("big", "big2", reflink="never", job=job)
        assert ei.value.errno == errno.ECANCELED
        assert sorted(os.listdir(r)) == ["big", "src", "victim"]  # no big2, no temporary name


@pytest.mark.parametrize("kind", ["Client", "AsyncClient"])
def test_timeout_raises_and_stops_the_daemon(big: tuple[Path, int], kind: str) -> None:
    r, total = big
    with server_thread(r) as path:
        if kind == "Client":
            with Client(path) as c:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError) as ei:
                    c.cp("src", "copy", recursive=True, timeout=0.05)
                waited = time.monotonic() - t0
                assert c.stat("src")  # still usable
        else:
            async def main() -> float:
                async with AsyncClient(path) as ac:
                    t0 = time.monotonic()
                    with pytest.raises(TimeoutError) as ei2:
                        await ac.cp("src", "copy", recursive=True, timeout=0.05)
                    assert "cp" in str(ei2.value)
                    assert await ac.exists("src")
                    return time.monotonic() - t0
            waited = trio.run(main)
        assert 0.05 <= waited < 5
        assert 0 <= _settled(r / "copy") < total
        if kind == "Client":
            assert ei.value.errno == errno.ETIMEDOUT and "cp" in str(ei.value)


def test_cancelled_async_task_stops_the_daemon(big: tuple[Path, int]) -> None:
    r, total = big

    async def main(path: str) -> None:
        async with AsyncClient(path) as ac:
            seen: list[Progress] = []
            with trio.move_on_after(5) as cs:
                async with trio.open_nursery() as n:
                    async def copy() -> None:
                        await ac.cp("src", "copy", recursive=True, progress=seen.append)
                    n.start_soon(copy)
                    while not seen or seen[-1].entries < 200:
                        await trio.sleep(0.01)
                    n.cancel_scope.cancel()
            assert not cs.cancelled_caught
            assert await ac.exists("src")

    with server_thread(r) as path:
        trio.run(main, path)
    assert 0 < _settled(r / "copy") < total


def test_timeout_validated_before_sending(tmp_path: Path) -> None:
    with server_thread(tmp_path) as path, Client(path) as c:
        with pytest.raises(TypeError):
            c.stat(".", timeout="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            c.stat(".", timeout=-1)
        assert c.stat(".", timeout=5).st_ino == os.stat(tmp_path).st_ino  # a fast call with a deadline


# -- the wire, by hand --------------------------------------------------------------------------


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(30)
    s.connect(path)
    return s


def _send(s: socket.socket, msg: list[Any]) -> None:
    s.send(b"\x00" + msgpack.packb(msg, use_bin_type=True))


def _recv(s: socket.socket) -> list[Any]:
    data = s.recv(MAX_FRAME + 1)
    assert data[:1] == b"\x00", data[:20]
    return msgpack.unpackb(data[1:], raw=False)


def test_v1_exchange_unchanged(big: tuple[Path, int]) -> None:
    """A version 1 client: one request, exactly one response, nothing in between."""
    r, total = big
    with server_thread(r) as path, _raw(path) as s:
        _send(s, [0, 1, "cp", [b"src", b"copy", True]])
        assert _recv(s) == [1, 1, None, None]
        _send(s, [0, 2, "exists", [b"copy"]])
        assert _recv(s) == [1, 2, None, True]  # the next message is the next reply
    assert _count(r / "copy") == total


def test_v2_progress_messages_then_the_reply(big: tuple[Path, int]) -> None:
    r, total = big
    with server_thread(r) as path, _raw(path) as s:
        _send(s, [0, 5, "cp", [b"src", b"copy", True], {"progress": True}])
        msgs = []
        while True:
            m = _recv(s)
            msgs.append(m)
            if m[0] == 1:
                break
        assert msgs[-1] == [1, 5, None, None]
        partials = msgs[:-1]
        assert partials and all(m[:3] == [3, 5, "progress"] for m in partials)
        assert partials[-1][3] == [total, DIRS * FILES * 100]


def test_v2_cancel_notification_stops_the_call(big: tuple[Path, int]) -> None:
    r, total = big
    took = []
    with server_thread(r) as path, _raw(path) as s:
        for i in range(20):
            _send(s, [0, 100 + i, "cp", [b"src", f"c{i}".encode(), True], {"progress": True}])
            while True:  # let it get going
                m = _recv(s)
                assert m[0] == 3, m
                if m[3][0] >= 200:
                    break
            t0 = time.monotonic()
            _send(s, [2, "cancel", [100 + i]])
            while True:
                m = _recv(s)
                if m[0] == 1:
                    break
            took.append(time.monotonic() - t0)
            assert m[1] == 100 + i and m[2]["errno"] == errno.ECANCELED, m
            assert 0 < _count(r / f"c{i}") < total
        _send(s, [2, "cancel", [99999]])  # a call that is not there: nothing happens
        _send(s, [0, 1, "exists", [b"src"]])
        assert _recv(s) == [1, 1, None, True]
    _latencies("daemon cp -r, 10k entries (cancel notification -> ECANCELED reply)", took)


@pytest.mark.parametrize("msg, what", [
    ([0, 1, "cp", [b"a", b"b"], {"progress": 1}], "expected bool"),
    ([0, 1, "cp", [b"a", b"b"], {"nosuch": True}], "unknown call option"),
    ([0, 1, "cp", [b"a", b"b"], [True]], "must be a map"),
    ([0, 1, "stat", [b"a"], {"progress": True}], "does not report progress"),
])
def test_v2_bad_options_are_refused(tmp_path: Path, msg: list[Any], what: str) -> None:
    with server_thread(tmp_path) as path, _raw(path) as s:
        _send(s, msg)
        m = _recv(s)
        assert m[:2] == [1, 1] and m[2]["errno"] == errno.EINVAL and what in m[2]["message"], m
        _send(s, [0, 2, "exists", [b"."]])
        assert _recv(s) == [1, 2, None, True]


def test_v2_bad_notification_is_a_protocol_error(tmp_path: Path) -> None:
    with server_thread(tmp_path) as path, _raw(path) as s:
        _send(s, [2, "cancel", ["x"]])
        m = _recv(s)
        assert m[:2] == [1, None] and m[2]["errno"] == errno.EPROTO and "notification" in m[2]["message"]


def test_disconnect_cancels_the_calls_of_the_connection(big: tuple[Path, int]) -> None:
    r, total = big
    with server_thread(r) as path:
        s = _raw(path)
        _send(s, [0, 1, "cp", [b"src", b"copy", True]])  # no progress asked: nothing is sent until the end
        while _count(r / "copy") < 200:
            time.sleep(0.002)
        s.close()
        assert 0 < _settled(r / "copy") < total
        with Client(path) as c:  # the daemon is fine
            assert c.exists("copy")


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024 + 7])  # in the request / through the fd
def test_progress_of_write_file_and_read_file(tmp_path: Path, backend: str, size: int) -> None:
    data = os.urandom(size)
    seen: list[Progress] = []
    with BACKENDS[backend](tmp_path) as fs:
        fs.write_file("f", data, progress=seen.append)
        _check_progress(seen, 1)
        assert seen[-1].bytes == size
        seen.clear()
        assert fs.read_file("f", progress=seen.append) == data
        _check_progress(seen, 1)
        assert seen[-1].bytes == size
    assert (tmp_path / "f").read_bytes() == data


def test_connection_lost_is_public(tmp_path: Path) -> None:
    """A call that may have changed something is not re-sent; it raises the public
    ConnectionLost (a ConnectionError) naming the socket."""
    import beneathd.client as bc

    assert issubclass(bc.ConnectionLost, ConnectionError) and "ConnectionLost" in bc.__all__
    with server_thread(tmp_path) as path:
        c = Client(path)
        c.exists(".")
        assert c._sock is not None
        c._sock.shutdown(socket.SHUT_RDWR)  # the connection breaks under the next call
        with pytest.raises(bc.ConnectionLost) as ei:
            c.mkdir("d")
        assert path in str(ei.value) and type(ei.value).__module__.startswith("beneathd")
        assert c.exists(".")  # reconnects for the next call
        c.close()
