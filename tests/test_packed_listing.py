"""scandir's packed form (the ``packed`` call option, ``Root._scandir_packed``, ``bn_scan_dir``).

The clients ask for it; the array form stays for version 1 and 2 peers (the Node client,
raw msgpack). Both must say the same of every kind of entry, in str and bytes, and both
must say what ``os`` says. A malformed packed reply is ``EPROTO``, never a wrong listing.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import stat
import struct
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from backends import server_thread

from beneathd.daemon import Root
from beneathd.protocol.codec import decode_result
from beneathd.protocol.methods import API
from beneathd.protocol.types import PACKED_STAT, entries_from_packed

SCANDIR = API["scandir"]


def _tree(root: Path) -> None:
    t = root / "ls"
    (t / "sub").mkdir(parents=True)
    (t / "f").write_bytes(b"hello")
    (t / "sub" / "g").write_bytes(b"")
    os.symlink("f", t / "to_file")
    os.symlink("sub", t / "to_dir")
    os.symlink("sub/g", t / "deeper")
    os.symlink("nope", t / "dangling")
    os.symlink("/etc/passwd", t / "absolute_out")
    os.symlink("../../..", t / "dotdot_out")
    os.symlink("x" * 1000, t / "long_text")
    os.symlink("to_file", t / "chain")
    os.mkfifo(t / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(t / "sock"))
    s.close()
    (t / ("n" * 255)).write_bytes(b"")
    with open(os.fsencode(t) + b"/not-utf8-\xff\xfe", "wb"):
        pass


def _reference(root: Path, path: Any) -> list[list[Any]]:
    """What os says of each entry: name, path, kind, lstat, link text, target's stat (in
    the tree, else None), sorted by name."""
    top = os.path.join(os.fsencode(root), os.fsencode(path))
    out = []
    for name in os.listdir(top):
        full = os.path.join(top, name)
        st = os.lstat(full)
        lt = tst = None
        if stat.S_ISLNK(st.st_mode):
            lt = os.readlink(full)
            real = os.path.realpath(full)
            inside = real.startswith(os.fsencode(root.resolve()) + b"/")
            tst = os.stat(full).st_ino if inside and os.path.exists(full) else None
        conv: Any = (lambda b: b) if isinstance(path, bytes) else os.fsdecode
        out.append([conv(name), conv(os.path.join(os.fsencode(path), name)), st.st_mode, st.st_ino, st.st_size,
                    None if lt is None else conv(lt), tst])
    return sorted(out, key=lambda r: os.fsencode(r[0]))


def _seen(entries: list[Any]) -> list[list[Any]]:
    out = []
    for e in entries:
        st = e.stat(follow_symlinks=False)
        tst = None
        if e.is_symlink():
            try:
                tst = e.stat().st_ino
            except FileNotFoundError:
                tst = None
        out.append([e.name, e.path, st.st_mode, st.st_ino, st.st_size, e.link_target, tst])
    return sorted(out, key=lambda r: os.fsencode(r[0]))


@pytest.mark.parametrize("path", ["ls", "ls/", b"ls", "ls/sub", "."])
def test_root_scandir_says_what_os_says(root_dir: Path, path: Any) -> None:
    _tree(root_dir)
    with Root(root_dir) as r:
        got = _seen(r.scandir(path))
    assert got == _reference(root_dir, path)
    kinds = {os.fsencode(row[0]): stat.S_IFMT(row[2]) for row in got}
    if path == "ls":
        assert len(kinds) == 14 and stat.S_IFSOCK in kinds.values() and stat.S_IFIFO in kinds.values()


def _raw(path: str, msgid: int, params: list[Any], options: dict[str, Any]) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)
        s.send(b"\x00" + msgpack.packb([0, msgid, "scandir", params, options]))
        data = b""
        while True:  # frames: a header byte (0: the last one), then the payload's part
            part = s.recv(1 << 20)
            data += part[1:]
            if part[:1] == b"\x00":
                break
        return msgpack.unpackb(data)


def _no_atime(e: Any) -> tuple[Any, ...]:
    """An entry's wire form and path, but the times a listing's readlink moves on (a
    link's atime) zeroed."""
    w = e.to_wire()
    for i in (3, 4):
        if w[i] is not None:
            w[i] = w[i][:7] + [0] + w[i][8:]
    return tuple(w), e.path


@pytest.mark.parametrize("like", ["ls", b"ls", "ls/"])
def test_packed_and_array_forms_agree(root_dir: Path, like: Any) -> None:
    _tree(root_dir)
    with server_thread(root_dir) as sock:
        packed = _raw(sock, 1, [os.fsencode(like)], {"link_target": True, "packed": True})
        array = _raw(sock, 2, [os.fsencode(like)], {"link_target": True})
    assert packed[2] is None and array[2] is None
    assert len(packed[3]) == 4 and all(isinstance(p, bytes) for p in packed[3])
    assert isinstance(array[3][0], list)
    a = decode_result(SCANDIR, packed[3], like)
    b = decode_result(SCANDIR, array[3], like)
    assert [_no_atime(e) for e in a] == [_no_atime(e) for e in b]
    assert _seen(a) == _reference(root_dir, like)


def test_packed_only_for_listings(root_dir: Path) -> None:
    with server_thread(root_dir) as sock, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(sock)
        s.send(b"\x00" + msgpack.packb([0, 7, "listdir", [b"."], {"packed": True}]))
        reply = msgpack.unpackb(s.recv(1 << 20)[1:])
    assert reply[1] == 7 and reply[2]["errno"] == errno.EINVAL and "packed" in reply[2]["message"]


def test_empty_directory(root_dir: Path) -> None:
    (root_dir / "e").mkdir()
    with Root(root_dir) as r:
        assert r._scandir_packed("e") == (b"", b"", b"", b"")
        assert r.scandir("e") == []


def _record(mode: int) -> bytes:
    return struct.pack("<13q", mode, 1, 2, 1, 0, 0, 0, 0, 0, 0, 4096, 0, 0)


FILE = _record(stat.S_IFREG | 0o644)
LINK = _record(stat.S_IFLNK | 0o777)


@pytest.mark.parametrize("parts", [
    (b"a", FILE, b"", b""),  # a name without its NUL
    (b"a\0", FILE[:-1], b"", b""),  # a record cut short
    (b"a\0b\0", FILE, b"", b""),  # two names, one record
    (b"a\0", LINK, b"", b""),  # a link without its text and target
    (b"a\0", LINK, b"t\0", b""),  # a link text without its target
    (b"a\0", FILE, b"t\0", FILE),  # a text for a name that is no link
    (b"a\0", FILE, b"", FILE),  # a target for no link
    ("a\0", FILE, b"", b""),  # not bytes
    (b"a\0", [1] * 13, b"", b""),
])
def test_malformed_packed_is_refused(parts: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        entries_from_packed(*parts, prefix="d")
    with pytest.raises(OSError) as ei:
        decode_result(SCANDIR, list(parts), "d")
    assert ei.value.errno == errno.EPROTO


def test_well_formed_packed_decodes() -> None:
    ents = entries_from_packed(b"a\0l\0", FILE + LINK, b"a\0", FILE, prefix="d")
    assert [(e.name, e.path, e.kind, e.target_kind, e.link_target) for e in ents] == [
        ("a", "d/a", "file", "file", None), ("l", "d/l", "symlink", "file", "a")]
    ents = entries_from_packed(b"l\0", LINK, b"\0", b"\0" * PACKED_STAT, prefix=b"")
    assert [(e.name, e.path, e.target_kind, e.link_target) for e in ents] == [(b"l", b"l", None, None)]
    with pytest.raises(FileNotFoundError):
        ents[0].stat()


def _fake_daemon(path: str, result: Any, content: bytes) -> threading.Thread:
    """A peer that answers one scandir request with ``result`` and a memfd of ``content``."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lst.bind(path)
    lst.listen(1)

    def serve() -> None:
        with lst, lst.accept()[0] as s:
            req = msgpack.unpackb(s.recv(1 << 16)[1:])
            fd = os.memfd_create("fake")
            os.write(fd, content)
            s.sendmsg([b"\x00" + msgpack.packb([1, req[1], None, result])],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            os.close(fd)
            s.recv(1 << 16)  # until the client goes

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("result, content", [
    ([2, 0, 0, 0], b"a"),  # shorter than it says
    ([2, 104, 0], b"a\0" + FILE),  # three sizes
    ([2, "104", 0, 0], b"a\0" + FILE),  # a size not an int
    ([2, 100, 0, 0], b"a\0" + FILE),  # a record cut short
    ({"names": 2}, b"a\0"),
])
def test_malformed_listing_fd_is_eproto(tmp_path: Path, result: Any, content: bytes) -> None:
    from beneathd.client import Client

    path = str(tmp_path / "fake.sock")
    t = _fake_daemon(path, result, content)
    before = len(os.listdir("/proc/self/fd"))
    with Client(path) as c:
        with pytest.raises(OSError) as ei:
            c.scandir("d")
        assert ei.value.errno == errno.EPROTO
        # the memfd closed: what is left open is the two ends of the connection (both in this process)
        assert len(os.listdir("/proc/self/fd")) == before + 2
    t.join(10)


def test_listing_fd_read_whole(tmp_path: Path) -> None:
    from beneathd.client import Client

    path = str(tmp_path / "fake.sock")
    t = _fake_daemon(path, [4, 2 * PACKED_STAT, 2, PACKED_STAT], b"a\0l\0" + FILE + LINK + b"a\0" + FILE)
    with Client(path) as c:
        ents = c.scandir(b"d")
    assert [(e.name, e.path, e.kind, e.target_kind, e.link_target) for e in ents] == [
        (b"a", b"d/a", "file", "file", None), (b"l", b"d/l", "symlink", "file", b"a")]
    t.join(10)
