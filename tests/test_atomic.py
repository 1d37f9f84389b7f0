"""Atomic writers (``open(path, mode, atomic=True)``) and payloads of any size.

DESIGN.md "Atomic writer" and "Any size": over ``Root`` and ``Client`` (the same bodies),
and ``AsyncClient`` (``await f.aclose()``); what a concurrent reader can see; the
daemon's bookkeeping (handles bound to their connection, a limit, a disconnect publishes
nothing); ``read_file``/``write_file`` far above the message limit, and the real daemon's
memory while it serves 2 GiB each way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from _util import IS_ROOT, EscapeError, tmpfs
from backends import BACKENDS, server_thread
from beneathd.client import AsyncClient, Client
from beneathd.protocol.codec import MAX_MESSAGE


def _backend(kind: str, root: Path) -> Any:
    return BACKENDS[kind](root)  # AsyncClient's writers through backends.SyncAtomic


def _no_litter(d: Path, *names: str) -> None:
    assert sorted(os.listdir(d)) == sorted(names), "a temporary name was left behind"


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_publish_on_close_and_nothing_before(tmp_path: Path, kind: str) -> None:
    (tmp_path / "old").write_bytes(b"old contents")
    with _backend(kind, tmp_path) as fs:
        f = fs.open("new", "wb", atomic=True)
        f.write(b"part 1, ")
        f.flush()
        assert not (tmp_path / "new").exists()  # an anonymous file until published
        f.write(b"part 2")
        f.close()
        assert (tmp_path / "new").read_bytes() == b"part 1, part 2"
        f.close()  # once only
        with fs.open("old", "w", atomic=True, encoding="utf-8") as t:
            t.write("névé")
            assert (tmp_path / "old").read_bytes() == b"old contents"
        assert (tmp_path / "old").read_text("utf-8") == "névé"
    _no_litter(tmp_path, "new", "old")


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_exception_or_discard_publishes_nothing(tmp_path: Path, kind: str) -> None:
    (tmp_path / "f").write_bytes(b"keep")
    with _backend(kind, tmp_path) as fs:
        with pytest.raises(ZeroDivisionError):
            with fs.open("f", "wb", atomic=True) as f:
                f.write(b"lost")
                1 / 0
        f = fs.open("g", "wb", atomic=True)
        f.write(b"lost too")
        f.discard()
        f.close()  # after discard: nothing
        f = fs.open("h", "wb", atomic=True)
        f.write(b"dropped")
        del f  # unclosed and dropped: nothing published
    assert (tmp_path / "f").read_bytes() == b"keep"
    _no_litter(tmp_path, "f")


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_x_mode(tmp_path: Path, kind: str) -> None:
    (tmp_path / "there").write_bytes(b"1")
    with _backend(kind, tmp_path) as fs:
        with pytest.raises(FileExistsError):
            fs.open("there", "xb", atomic=True)
        f = fs.open("late", "xb", atomic=True)
        f.write(b"mine")
        (tmp_path / "late").write_bytes(b"theirs")  # appears before the publish
        with pytest.raises(FileExistsError) as ei:
            f.close()
        assert ei.value.filename == "late"
        assert (tmp_path / "late").read_bytes() == b"theirs"
        with fs.open("fresh", "x", atomic=True) as t:
            t.write("ok")
    assert (tmp_path / "fresh").read_text() == "ok"
    _no_litter(tmp_path, "there", "late", "fresh")


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_modes_bits_links_and_plus(tmp_path: Path, kind: str) -> None:
    (tmp_path / "private").write_bytes(b"x")
    os.chmod(tmp_path / "private", 0o640)
    (tmp_path / "target").write_bytes(b"t")
    os.symlink("target", tmp_path / "link")
    with _backend(kind, tmp_path) as fs:
        with fs.open("private", "wb", atomic=True) as f:
            f.write(b"y")
        assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) == 0o640  # kept, as write_file
        with fs.open("made", "wb", atomic=True, perms=0o600) as f:
            f.write(b"z")
        assert stat.S_IMODE(os.stat(tmp_path / "made").st_mode) == 0o600 & ~_umask()
        with fs.open("link", "wb", atomic=True) as f:  # a final in-tree link is followed
            f.write(b"through")
        assert os.readlink(tmp_path / "link") == "target"
        assert (tmp_path / "target").read_bytes() == b"through"
        with fs.open("rw", "wb+", atomic=True) as f:
            f.write(b"read me back")
            f.seek(0)
            assert f.read() == b"read me back"
        for mode in ("r", "rb", "a", "ab", "r+"):
            with pytest.raises(ValueError, match="atomic"):
                fs.open("x", mode, atomic=True)
        with pytest.raises(ValueError):
            fs.open("x", "wb", atomic=True, encoding="utf-8")
        with pytest.raises(IsADirectoryError):
            fs.open(".", "wb", atomic=True)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_escapes_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "r"
    root.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(str(out / "f"), root / "outlink")
    os.symlink(str(out), root / "outdir")
    with _backend(kind, root) as fs:
        for p in ("../f", "/etc/passwd", "outlink", "outdir/f", "outdir/"):
            with pytest.raises((EscapeError, IsADirectoryError)) as ei:
                fs.open(p, "wb", atomic=True)
            assert ei.type is EscapeError or p.endswith("/"), (p, ei.value)
    assert os.listdir(out) == []


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_reader_never_sees_a_partial_file(tmp_path: Path, kind: str) -> None:
    old, new = b"A" * 1_000_000, b"B" * 3_000_000
    (tmp_path / "f").write_bytes(old)
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            data = (tmp_path / "f").read_bytes()
            seen.add(data[:1] + str(len(data)).encode())

    t = threading.Thread(target=reader)
    t.start()
    try:
        with _backend(kind, tmp_path) as fs:
            for _ in range(20):
                with fs.open("f", "wb", atomic=True) as f:
                    for i in range(0, len(new), 65536):
                        f.write(new[i:i + 65536])
                with fs.open("f", "wb", atomic=True) as f:
                    f.write(old)
    finally:
        stop.set()
        t.join()
    assert seen <= {b"A1000000", b"B3000000"}, seen


def test_async_client_atomic_writer(tmp_path: Path) -> None:
    async def main(path: str) -> None:
        async with AsyncClient(path) as ac:
            f = await ac.open("a", "wb", atomic=True)
            f.write(b"async")
            with pytest.raises(RuntimeError, match="aclose"):
                f.close()
            assert not (tmp_path / "a").exists()
            await f.aclose()
            async with await ac.open("b", "w", atomic=True) as g:
                g.write("text")
            with pytest.raises(KeyError):
                async with await ac.open("c", "wb", atomic=True) as h:
                    h.write(b"lost")
                    raise KeyError
            h2 = await ac.open("d", "wb", atomic=True)
            await h2.discard()
            h3 = await ac.open("e", "xb", atomic=True)
            (tmp_path / "e").write_bytes(b"theirs")
            with pytest.raises(FileExistsError) as ei:
                await h3.aclose()
            assert ei.value.filename == "e"

    with server_thread(tmp_path) as path:
        trio.run(main, path)
    assert (tmp_path / "a").read_bytes() == b"async" and (tmp_path / "b").read_text() == "text"
    _no_litter(tmp_path, "a", "b", "e")


# -- the daemon's bookkeeping -----------------------------------------------------------------


def test_disconnect_publishes_nothing_and_handles_stay_on_their_connection(tmp_path: Path) -> None:
    with server_thread(tmp_path, max_writers=3) as path:
        c = Client(path)
        f = c.open("f", "wb", atomic=True)
        f.write(b"never")
        c.close()  # the daemon drops the writer
        with pytest.raises((ConnectionError, ValueError)):
            f.close()
        with Client(path) as c2:
            # a handle of another connection is not found (never another peer's writer)
            with pytest.raises(OSError) as ei:
                c2._writer("writer_publish", 1)
            assert ei.value.errno == errno.EBADF
            writers = [c2.open(f"w{i}", "wb", atomic=True) for i in range(3)]
            with pytest.raises(OSError) as ei:
                c2.open("w3", "wb", atomic=True)
            assert ei.value.errno == errno.EMFILE and "limit is 3" in str(ei.value)
            for w in writers:
                w.close()
    _no_litter(tmp_path, "w0", "w1", "w2")


def test_read_only_peer_cannot_open_an_atomic_writer(tmp_path: Path) -> None:
    from beneathd.daemon.auth import Policy

    with server_thread(tmp_path, policy=Policy({54321}, ro_uids={os.geteuid()})) as path, \
            Client(path) as c:
        with pytest.raises(PermissionError):
            c.open("f", "wb", atomic=True)
        with pytest.raises(PermissionError):
            c._writer("writer_publish", 1)
    _no_litter(tmp_path)


# -- any size ------------------------------------------------------------------------------------


def test_any_size_round_trip_over_both_clients(tmp_path: Path) -> None:
    size = MAX_MESSAGE + 5 * 1024 * 1024 + 3  # above the message limit
    data = os.urandom(1 << 20) * (size >> 20) + b"end"
    want = hashlib.sha256(data).hexdigest()
    with tmpfs(tmp_path / "r") as r, server_thread(r) as path:
        with Client(path) as c:
            c.write_file("big", data)
            assert hashlib.sha256((r / "big").read_bytes()).hexdigest() == want
            assert hashlib.sha256(c.read_file("big")).hexdigest() == want
            c.write_file("small", b"s" * 100)  # the request path still serves small ones
            assert c.read_file("small") == b"s" * 100

        async def main() -> None:
            async with AsyncClient(path) as ac:
                await ac.write_file("big2", data)
                assert hashlib.sha256(await ac.read_file("big2")).hexdigest() == want
                assert await ac.read_file("small") == b"s" * 100

        trio.run(main)
        _no_litter(r, "big", "big2", "small")


@pytest.mark.skipif(not IS_ROOT, reason="starts the real daemon as root")
def test_two_gib_each_way_keeps_the_daemon_small(tmp_path: Path) -> None:
    """DESIGN.md: 2 GiB write_file and read_file with the daemon's RSS growth under 64 MiB."""
    from test_daemon import start_daemon

    size = 2 << 30
    data = b"\x5a" * size
    with tmpfs(tmp_path / "r", size="3g") as r, start_daemon(tmp_path, "--no-journal", root=r) as d:
        def hwm() -> int:
            for line in open(f"/proc/{d.pid}/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            raise AssertionError("no VmHWM")

        with Client(d.sock) as c:
            c.exists(".")
            before = hwm()
            c.write_file("two", data)
            assert os.stat(r / "two").st_size == size
            got = c.read_file("two")
            assert len(got) == size and got[:1] == b"\x5a" and got[-1:] == b"\x5a"
            del got
            growth = hwm() - before
        print(f"\ndaemon peak RSS growth over a 2 GiB write_file and read_file: {growth / 2**20:.1f} MiB")
        assert growth < 64 << 20


def test_native_holds_a_replaced_big_file(tmp_path: Path) -> None:
    """BN_AW_HOLD_OLD: a replaced regular file of BN_HOLD_BYTES or more comes back as an
    O_PATH fd on the unlinked old file (its storage is freed at its close); a smaller one,
    a new name, or a refused replace hold nothing."""
    from beneathd._native import ffi, lib
    from beneathd.daemon import Root

    big = b"o" * lib.BN_HOLD_BYTES
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(big[:-1])
    (tmp_path / "d").mkdir()
    with Root(tmp_path) as r:
        held = ffi.new("int *", 7)
        flags = lib.BN_AW_OVERWRITE | lib.BN_AW_HOLD_OLD
        assert lib.bn_write_file(r._r, b"big", b"new", 3, 0o666, flags, ffi.NULL, held) == 0
        fd = held[0]
        assert fd >= 0
        try:
            st = os.fstat(fd)
            assert st.st_nlink == 0 and st.st_size == len(big)
            assert os.readlink(f"/proc/self/fd/{fd}").endswith("(deleted)")
        finally:
            os.close(fd)
        assert (tmp_path / "big").read_bytes() == b"new"
        for name in (b"small", b"fresh"):  # too small to hold, nothing there
            assert lib.bn_write_file(r._r, name, b"x", 1, 0o666, flags, ffi.NULL, held) == 0
            assert held[0] == -1
        held[0] = 7
        assert lib.bn_write_file(r._r, b"d", b"x", 1, 0o666, flags, ffi.NULL, held) == -errno.EISDIR
        assert held[0] == -1
        (tmp_path / "big").write_bytes(big)
        assert lib.bn_copy_file(r._r, b"small", b"big", 1, lib.BN_REFLINK_NEVER, 0, ffi.NULL, held) == 0
        assert held[0] >= 0 and os.fstat(held[0]).st_nlink == 0
        os.close(held[0])
        assert lib.bn_write_file(r._r, b"plain", b"x", 1, 0o666, lib.BN_AW_OVERWRITE, ffi.NULL, ffi.NULL) == 0


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_replaced_big_files_are_freed_after_the_call(tmp_path: Path, kind: str) -> None:
    """write_file (in the request and through a writer's fd), copy_file and an atomic
    writer hand the replaced big file to the closer (daemon/release.py), which closes it:
    no fd on a deleted file is left once it has settled, and the contents are the new."""
    from beneathd.daemon import release

    mib = b"m" * (1 << 20)
    names = {"a": mib * 2, "b": mib * 6, "c": mib * 2, "e": mib * 2}
    for n, data in names.items():
        (tmp_path / n).write_bytes(data)
    before = release.handed
    with _backend(kind, tmp_path) as fs:
        fs.write_file("a", b"new a")
        fs.write_file("b", mib * 5 + b"new b")  # above BIG_WRITE: a client writes into an atomic writer
        fs.write_file("src", b"new c")
        fs.copy_file("src", "c")
        with fs.open("e", "wb", atomic=True) as f:
            f.write(b"new e")
    assert release.settle(30)
    assert release.handed - before == 4
    assert (tmp_path / "a").read_bytes() == b"new a"
    assert (tmp_path / "b").read_bytes() == mib * 5 + b"new b"
    assert (tmp_path / "c").read_bytes() == b"new c"
    assert (tmp_path / "e").read_bytes() == b"new e"
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        assert not (target.startswith(str(tmp_path)) and target.endswith("(deleted)")), target
