"""scandir's packed form (the ``packed`` call option, ``Root._scandir_packed``, ``bn_scan_dir``).

The clients ask for it; the array form stays for version 1 and 2 peers (the Node client,
raw msgpack). Both must say the same of every kind of entry, in str and bytes, and both
must say what ``os`` says. A malformed packed reply is ``EPROTO``, never a wrong listing.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
import stat
import struct
import threading
import termios
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from _util import empty_files
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


class _Str(str):
    pass


def test_str_subclass_path_is_a_str_path(root_dir: Path) -> None:
    (root_dir / "d").mkdir()
    (root_dir / "d" / "f").write_bytes(b"")
    with Root(root_dir) as r:
        ents = r.scandir(_Str("d"))
    assert [(e.name, e.path) for e in ents] == [("f", "d/f")]
    assert decode_result(SCANDIR, [b"f\0", FILE, b"", b""], _Str("d"))[0].path == "d/f"


def test_big_inode_numbers_are_unsigned() -> None:
    rec = struct.pack("<13q", stat.S_IFREG | 0o644, -2, -3, 1, 0, 0, 0, -10**9, 0, 0, 4096, 0, -4)
    st = entries_from_packed(b"a\0", rec, b"", b"", prefix="d")[0].stat(follow_symlinks=False)
    assert (st.st_ino, st.st_dev, st.st_rdev) == (2**64 - 2, 2**64 - 3, 2**64 - 4)
    assert st.st_atime_ns == -10**9  # times stay signed (before 1970)


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


def _sealed(content: bytes, seal: bool = True) -> int:
    fd = os.memfd_create("fake", os.MFD_ALLOW_SEALING)
    os.write(fd, content)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return fd


def _fake_daemon(path: str, result: Any, content: bytes | None, make: Any = None) -> threading.Thread:
    """A peer that answers one scandir request with ``result`` and a sealed memfd of
    ``content`` (or the fd ``make()`` opens)."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lst.bind(path)
    lst.listen(1)

    def serve() -> None:
        with lst, lst.accept()[0] as s:
            req = msgpack.unpackb(s.recv(1 << 16)[1:])
            fd = make() if make is not None else _sealed(content or b"")
            s.sendmsg([b"\x00" + msgpack.packb([1, req[1], None, result])],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            os.close(fd)
            s.recv(1 << 16)  # until the client goes

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def _pipe() -> int:
    r, w = os.pipe()
    os.write(w, b"a\0" + FILE)
    os.close(w)
    return r


@pytest.mark.parametrize("result, content, make", [
    ([2, 0, 0, 0], b"a", None),  # shorter than it says
    ([2, 104, 0], b"a\0" + FILE, None),  # three sizes
    ([2, "104", 0, 0], b"a\0" + FILE, None),  # a size not an int
    ([2, 100, 0, 0], b"a\0" + FILE, None),  # a record cut short (and the fd longer than the sizes)
    ({"names": 2}, b"a\0", None),
    ([2**63, 0, 0, 0], b"a\0", None),  # far more than the fd holds
    ([2**50, 0, 0, 0], b"a\0", None),
    ([2, 104, 0, 0], None, lambda: _sealed(b"a\0" + FILE, seal=False)),  # the daemon could still change it
    ([2, 104, 0, 0], None, _pipe),  # not a file
    ([1 << 20, 0, 0, 0], None, lambda: os.open("/dev/zero", os.O_RDONLY)),  # endless
])
def test_malformed_listing_fd_is_eproto(tmp_path: Path, result: Any, content: bytes | None, make: Any) -> None:
    from beneathd.client import Client

    path = str(tmp_path / "fake.sock")
    t = _fake_daemon(path, result, content, make)
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


def test_listings_a_peer_does_not_read_stay_in_its_reply_budget(root_dir: Path) -> None:
    """A memfd listing sent stays in the connection's reply budget (``max_reply_bytes``)
    until the peer has read it: a peer that asks for three listings each over the budget
    and reads none has at most the two built at once in its queue, not three (each may be
    ~125 bytes an entry of the daemon's memory); reading lets the next come."""
    big = root_dir / "big"
    empty_files(big, 2000)
    assert os.stat(big).st_size > 16 * 1024  # (a long call: listed in a worker, replied by its task)
    with server_thread(root_dir, max_message=32 * 1024, max_reply_bytes=64 * 1024) as path, \
            socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)
        for msgid in (1, 2, 3):
            s.send(b"\x00" + msgpack.packb([0, msgid, "scandir", [b"big"], {"link_target": True, "packed": True}]))
        deadline = time.monotonic() + 30
        while _queued(s) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # (time for all three, were they sent)
        queued = _queued(s)
        got = []
        for _ in range(3):
            data, anc, _flags, _ = s.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
            fds = [f for _l, _t, d in anc for f in array.array("i", d[:len(d) - len(d) % 4])]
            reply = msgpack.unpackb(data[1:])
            assert reply[2] is None and len(fds) == 1, reply
            if not got:
                assert 0 < queued < 3 * len(data), (queued, len(data))  # two at most, of 16 bytes each
            got.append(reply[1])
            size = os.fstat(fds[0]).st_size
            assert size == sum(reply[3]) and size > 32 * 1024
            for f in fds:
                os.close(f)
    assert sorted(got) == [1, 2, 3]


def _queued(s: socket.socket) -> int:
    """Bytes waiting in ``s``'s receive queue (all datagrams, SIOCINQ on AF_UNIX)."""
    return int(struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
