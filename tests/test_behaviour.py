"""Behaviour of every method, compared with os / shutil / pathlib on a plain directory.

Each comparison builds the same small tree twice: beneath the root (used through ``fs``) and
in a reference directory (used with plain ``os`` calls, ``dir_fd`` style).  Results must be
equal; failures must be the same exception class with the same errno, and ``.filename``
must be the caller's own path (never the root's absolute path).
"""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from _util import IS_ROOT, EscapeError, call_with_timeout, du_by_path

NON_UTF8 = b"caf\xe9-\xff"  # not valid UTF-8


def build(d: Path) -> None:
    (d / "f").write_bytes(b"hello\n")
    (d / "e").write_bytes(b"")
    (d / "d").mkdir()
    (d / "d" / "g").write_bytes(b"g\n")
    (d / "d" / "sub").mkdir()
    (d / "d" / "sub" / "h").write_bytes(b"h\n")
    os.symlink("f", d / "lf")          # in-tree link to a file
    os.symlink("d", d / "ld")          # in-tree link to a dir
    os.symlink("missing", d / "dang")  # dangling in-tree link
    os.symlink("d/../f", d / "ldot")   # link whose text has ".."
    os.mkfifo(d / "fifo")
    os.chmod(d / "f", 0o644)


@pytest.fixture
def ref(tmp_path: Path, root_dir: Path) -> Path:
    r = tmp_path / "ref"
    r.mkdir()
    build(r)
    build(root_dir)
    return r


def run(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except OSError as e:
        return "err", e


def same(fs_fn: Callable[[], Any], os_fn: Callable[[], Any], path: Any = None,
         norm: Callable[[Any], Any] = lambda x: x) -> Any:
    """Assert fs and os agree; return fs's result."""
    a = run(fs_fn)
    b = run(os_fn)
    if a[0] == "err" or b[0] == "err":
        assert a[0] == b[0] == "err", f"fs: {a!r}  os: {b!r}"
        ea, eb = a[1], b[1]
        assert type(ea) is type(eb), f"fs raised {ea!r}, os raised {eb!r}"
        assert ea.errno == eb.errno, f"fs errno {ea.errno}, os errno {eb.errno}"
        if path is not None:
            assert ea.filename == path, f"filename {ea.filename!r} != caller's {path!r}"
        return None
    assert norm(a[1]) == norm(b[1]), f"fs: {a[1]!r}  os: {b[1]!r}"
    return a[1]


ST_FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size")


def st_norm_kind(st: os.stat_result) -> tuple[Any, ...]:
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_nlink)


# ---------------------------------------------------------------------------------- stat


PATHS = ["f", "e", "d", "d/g", "d/sub/h", "lf", "ld", "ld/g", "dang", "ldot", "fifo", "missing",
         "d/missing", "f/", "d/", "ld/", "lf/", "dang/", ".", "./f", "d/..", "d/../f", "d/./g",
         "f/x", "d//g", "missing/x", ""]


@pytest.mark.parametrize("p", PATHS)
def test_stat_like_os(fs: Any, ref: Path, root_dir: Path, p: str) -> None:
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        same(lambda: fs.stat(p), lambda: os.stat(p if p else "", dir_fd=rfd), p, norm=st_norm_kind)
        same(lambda: fs.lstat(p), lambda: os.lstat(p, dir_fd=rfd), p, norm=st_norm_kind)
        same(lambda: fs.stat(p, follow_symlinks=False), lambda: os.stat(p, dir_fd=rfd, follow_symlinks=False),
             p, norm=st_norm_kind)
    finally:
        os.close(rfd)


def test_stat_result_fields_and_identity(fs: Any, root_dir: Path, ref: Path) -> None:
    st = fs.stat("f")
    real = os.stat(root_dir / "f")
    for name in (*ST_FIELDS, "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
        assert getattr(st, name) == getattr(real, name), name
    assert fs.stat(b"f").st_ino == real.st_ino
    assert fs.stat("lf").st_ino == real.st_ino
    assert stat.S_ISLNK(fs.lstat("lf").st_mode)
    assert fs.stat(".").st_ino == os.stat(root_dir).st_ino


@pytest.mark.parametrize("p", PATHS)
def test_exists_like_os_path(fs: Any, ref: Path, p: str) -> None:
    want = os.path.exists(os.path.join(str(ref), p)) if p else False
    assert fs.exists(p) is want


# ---------------------------------------------------------------------------------- listing


@pytest.mark.parametrize("p", [".", "d", "ld", "d/sub", "f", "missing", "lf", "dang", "d/", "fifo", ""])
def test_listdir_like_os(fs: Any, ref: Path, p: str) -> None:
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def osl() -> list[str]:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK, dir_fd=rfd)
            try:
                return os.listdir(fd)
            finally:
                os.close(fd)
        same(lambda: fs.listdir(p), osl, p, norm=sorted)
    finally:
        os.close(rfd)


def test_listdir_default_and_bytes(fs: Any, root_dir: Path, ref: Path) -> None:
    assert sorted(fs.listdir()) == sorted(os.listdir(root_dir))
    got = fs.listdir(b".")
    assert all(isinstance(n, bytes) for n in got)
    assert sorted(got) == sorted(os.listdir(os.fsencode(str(root_dir))))


def test_scandir_entries(fs: Any, root_dir: Path, ref: Path) -> None:
    ents = {e.name: e for e in fs.scandir(".")}
    with os.scandir(ref) as it:
        want = {e.name: e for e in it}
    assert set(ents) == set(want)
    for name, e in ents.items():
        w = want[name]
        assert e.is_symlink() == w.is_symlink(), name
        assert e.is_dir() == w.is_dir(), name
        assert e.is_file() == w.is_file(), name
        assert e.is_dir(follow_symlinks=False) == w.is_dir(follow_symlinks=False), name
        assert e.is_file(follow_symlinks=False) == w.is_file(follow_symlinks=False), name
    bents = fs.scandir(b"d")
    assert sorted(e.name for e in bents) == [b"g", b"sub"]


def test_du_like_a_reference_walk(fs: Any, root_dir: Path) -> None:
    """du = (sum of st_blocks * 512, entries) by lstat over the tree, the top included;
    links are entries, never followed (not even a final one)."""
    t = root_dir / "dut"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "f").write_bytes(b"x" * 10_000)
    (t / "g").write_bytes(b"y" * 5)
    os.symlink("a", t / "la")
    os.symlink("/", t / "out")

    ref = du_by_path

    assert fs.du("dut") == ref(t)
    assert fs.du(b"dut/a") == ref(t / "a")
    assert fs.du("dut/g") == (os.lstat(t / "g").st_blocks * 512, 1)
    assert fs.du("dut/la") == (os.lstat(t / "la").st_blocks * 512, 1)  # the link itself
    assert fs.du("dut/la/") == ref(t / "a")  # a trailing slash follows, in the tree
    seen: list[Any] = []
    assert fs.du("dut", progress=seen.append) == ref(t)
    assert seen[-1].entries == ref(t)[1]
    with pytest.raises(FileNotFoundError):
        fs.du("dut/nope")
    with pytest.raises(EscapeError):
        fs.du("dut/out/")
    with pytest.raises(EscapeError):
        fs.du("../x")


def test_scandir_link_target(fs: Any, root_dir: Path, ref: Path) -> None:
    """DESIGN.md "Listings": a symlink's entry carries its text (str or bytes like name)."""
    os.symlink("../../somewhere/else", root_dir / "far")
    ents = {e.name: e for e in fs.scandir(".")}
    for name, e in ents.items():
        if e.is_symlink():
            assert e.link_target == os.readlink(root_dir / name), name
        else:
            assert e.link_target is None, name
    bents = {e.name: e for e in fs.scandir(b".")}
    assert bents[b"far"].link_target == b"../../somewhere/else"


def test_scandir_v1_entries_have_no_link_text(root_dir: Path) -> None:
    """A request without the link_target option gets the version 1 entry shape."""
    import socket

    import msgpack
    from backends import server_thread

    os.symlink("x", root_dir / "ln")
    with server_thread(root_dir) as path, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(path)
        s.send(b"\x00" + msgpack.packb([0, 1, "scandir", [b"."]]))
        reply = msgpack.unpackb(s.recv(1 << 20)[1:])
        assert reply[2] is None and reply[3] and all(len(e) == 5 for e in reply[3])
        s.send(b"\x00" + msgpack.packb([0, 2, "scandir", [b"."], {"link_target": True}]))
        reply = msgpack.unpackb(s.recv(1 << 20)[1:])
        assert [e[5] for e in reply[3] if e[0] == b"ln"] == [b"x"]


def test_scandir_entry_stat_like_os(fs: Any, root_dir: Path, ref: Path) -> None:
    """entry.stat() (following in-tree links) and stat(follow_symlinks=False) on every backend."""
    ents = {e.name: e for e in fs.scandir(".")}
    with os.scandir(ref) as it:
        want = {e.name: e for e in it}
    for name, e in ents.items():
        w = want[name]
        assert e.stat(follow_symlinks=False).st_mode == w.stat(follow_symlinks=False).st_mode, name
        assert e.inode() == os.lstat(root_dir / name).st_ino, name
        try:
            ws = w.stat()
        except FileNotFoundError:
            with pytest.raises(FileNotFoundError):
                e.stat()
            continue
        got = e.stat()
        assert (got.st_mode, got.st_size) == (ws.st_mode, ws.st_size), name
        assert got.st_ino == os.stat(root_dir / name).st_ino, name


def test_listdir_10k_entries(fs: Any, root_dir: Path, ref: Path) -> None:
    big = root_dir / "big"
    big.mkdir()
    names = {f"entry-{i:05d}-{'x' * 40}" for i in range(10_000)}
    for n in names:
        os.close(os.open(big / n, os.O_CREAT | os.O_WRONLY, 0o644))
    assert set(fs.listdir("big")) == names
    ents = list(fs.scandir("big"))
    assert len(ents) == 10_000 and all(e.is_file() for e in ents)


def test_non_utf8_names(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.write_file(NON_UTF8, b"x")
    assert os.path.exists(os.fsencode(str(root_dir)) + b"/" + NON_UTF8)
    assert NON_UTF8 in fs.listdir(b".")
    assert os.fsdecode(NON_UTF8) in fs.listdir(".")  # surrogateescape, like os.listdir
    assert fs.read_file(NON_UTF8) == b"x"
    assert fs.read_file(os.fsdecode(NON_UTF8)) == b"x"
    fs.mkdir(NON_UTF8 + b".d")
    fs.rename(NON_UTF8, NON_UTF8 + b".d/" + NON_UTF8)
    assert fs.listdir(NON_UTF8 + b".d") == [NON_UTF8]
    fs.symlink(NON_UTF8, b"l")
    assert fs.readlink(b"l") == NON_UTF8
    with pytest.raises(FileNotFoundError) as ei:
        fs.stat(NON_UTF8 + b"-missing")
    assert ei.value.filename == NON_UTF8 + b"-missing"


# ---------------------------------------------------------------------------------- links


@pytest.mark.parametrize("p", ["lf", "ld", "dang", "ldot", "f", "d", "missing", "lf/", "d/lf"])
def test_readlink_like_os(fs: Any, ref: Path, p: str) -> None:
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        same(lambda: fs.readlink(p), lambda: os.readlink(p, dir_fd=rfd), p)
        if not p.endswith("/"):
            assert isinstance(run(lambda: fs.readlink(os.fsencode(p)))[1], (bytes, OSError))
    finally:
        os.close(rfd)


@pytest.mark.parametrize("p,want", [
    ("f", "f"), ("lf", "f"), ("ld", "d"), ("ld/g", "d/g"), ("ldot", "f"), (".", "."),
    ("d/..", "."), ("d/sub/../g", "d/g"), ("missing", "missing"), ("d/missing", "d/missing"),
    ("dang", "missing"),
])
def test_realpath_relative_to_root(fs: Any, ref: Path, p: str, want: str) -> None:
    assert fs.realpath(p) == want
    assert fs.realpath(os.fsencode(p)) == os.fsencode(want)
    assert os.path.relpath(os.path.realpath(ref / p), ref) == want


def test_symlink_and_link(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.symlink("f", "s")
    assert os.readlink(root_dir / "s") == "f"
    with pytest.raises(FileExistsError) as ei:
        fs.symlink("f", "s")
    fs.link("f", "h")
    assert os.stat(root_dir / "h").st_ino == os.stat(root_dir / "f").st_ino
    assert os.stat(root_dir / "f").st_nlink == 2
    # link's source is never followed: a hard link to the symlink itself
    fs.link("lf", "hl")
    assert os.path.islink(root_dir / "hl")
    assert os.lstat(root_dir / "hl").st_ino == os.lstat(root_dir / "lf").st_ino
    with pytest.raises(FileExistsError) as ei:
        fs.link("f", "h")
    assert ei.value.filename == "f"
    with pytest.raises(FileNotFoundError):
        fs.link("missing", "h2")
    with pytest.raises(PermissionError if not IS_ROOT else OSError):
        fs.link("d", "hd")  # no hard links to directories (EPERM)


# ---------------------------------------------------------------------------------- mkdir


def test_mkdir_like_pathlib(fs: Any, root_dir: Path, ref: Path) -> None:
    for p, kw in [("n", {}), ("n", {}), ("n", {"exist_ok": True}), ("a/b/c", {}),
                  ("a/b/c", {"parents": True}), ("a/b/c", {"parents": True}),
                  ("a/b/c", {"parents": True, "exist_ok": True}), ("f", {"exist_ok": True}),
                  ("f/x", {"parents": True}), ("lf", {"exist_ok": True}), ("ld", {"exist_ok": True}),
                  ("dang", {}), ("ld/new", {}), ("d/", {"exist_ok": True}), ("x/", {}),
                  # parents: what is there already is judged as pathlib's is_dir does
                  ("ld", {"parents": True, "exist_ok": True}), ("ld", {"parents": True}),
                  ("lf", {"parents": True, "exist_ok": True}), ("dang", {"parents": True, "exist_ok": True}),
                  ("dang/x", {"parents": True}), ("lf/x", {"parents": True, "exist_ok": True}),
                  ("d/sub/h", {"parents": True, "exist_ok": True}), ("d/./q/../r/", {"parents": True}),
                  ("d//s//t", {"parents": True}), ("ld/sub", {"parents": True, "exist_ok": True})]:
        same(lambda: fs.mkdir(p, **kw), lambda: (ref / p).mkdir(**kw), p)
    assert sorted(os.listdir(root_dir)) == sorted(os.listdir(ref))
    assert os.path.isdir(root_dir / "d" / "new")


def test_mkdir_mode(fs: Any, root_dir: Path, ref: Path) -> None:
    old = os.umask(0o022)
    try:
        fs.mkdir("m", 0o700)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root_dir / "m").st_mode) == 0o700


# ---------------------------------------------------------------------------------- removal


@pytest.mark.parametrize("p", ["f", "lf", "ld", "dang", "d", "missing", "f/", "ld/", "d/g", "fifo", ".", "d/.."])
def test_unlink_like_os(fs: Any, root_dir: Path, ref: Path, p: str) -> None:
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        same(lambda: fs.unlink(p), lambda: os.unlink(p, dir_fd=rfd), p)
    finally:
        os.close(rfd)
    assert sorted(os.listdir(root_dir)) == sorted(os.listdir(ref))
    assert os.path.exists(root_dir / "f") or p == "f"  # unlinking a link never touches its target


def test_unlink_missing_ok(fs: Any, ref: Path) -> None:
    fs.unlink("missing", missing_ok=True)
    with pytest.raises(FileNotFoundError):
        fs.unlink("missing")
    with pytest.raises(FileNotFoundError):
        fs.unlink("missing/x", missing_ok=False)


@pytest.mark.parametrize("p", ["d", "d/sub", "f", "ld", "missing", "e", "d/sub/", "ld/"])
def test_rmdir_like_os(fs: Any, root_dir: Path, ref: Path, p: str) -> None:
    for base in (root_dir, ref):
        (base / "empty").mkdir(exist_ok=True)
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        same(lambda: fs.rmdir(p), lambda: os.rmdir(p, dir_fd=rfd), p)
        same(lambda: fs.rmdir("empty"), lambda: os.rmdir("empty", dir_fd=rfd), "empty")
    finally:
        os.close(rfd)


def test_rm(fs: Any, root_dir: Path, ref: Path) -> None:
    with pytest.raises(IsADirectoryError):
        fs.rm("d")
    fs.rm("f")
    assert not os.path.exists(root_dir / "f")
    with pytest.raises(FileNotFoundError):
        fs.rm("f")
    fs.rm("f", force=True)
    fs.rm("nothere/x", recursive=True, force=True)
    # rm -r of a link to a dir removes only the link
    fs.rm("ld", recursive=True)
    assert not os.path.lexists(root_dir / "ld")
    assert os.path.isfile(root_dir / "d" / "g")
    # a link inside a tree is removed, not followed
    os.symlink("../../e", root_dir / "d" / "sub" / "le")
    fs.rm("d", recursive=True)
    assert not os.path.exists(root_dir / "d")
    assert os.path.isfile(root_dir / "e")
    fs.rm("dang")
    assert not os.path.lexists(root_dir / "dang")


def test_rm_deep_tree(fs: Any, root_dir: Path, ref: Path) -> None:
    p = root_dir / "deep"
    cur = p
    for i in range(200):
        cur = cur / "x"
    cur.mkdir(parents=True)
    (cur / "f").write_bytes(b"x")
    fs.rm("deep", recursive=True)
    assert not p.exists()


# ---------------------------------------------------------------------------------- rename family


def test_rename(fs: Any, root_dir: Path, ref: Path) -> None:
    rfd = os.open(ref, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for s, d in [("f", "f2"), ("f2", "e"), ("missing", "x"), ("lf", "lf2"), ("d", "f2"),
                     ("e", "d"), ("d", "d/sub/x"), ("ld", "ld2")]:
            same(lambda: fs.rename(s, d), lambda: os.rename(s, d, src_dir_fd=rfd, dst_dir_fd=rfd), s)
            assert sorted(os.listdir(root_dir)) == sorted(os.listdir(ref)), (s, d)
    finally:
        os.close(rfd)
    assert os.readlink(root_dir / "lf2") == "f"  # the link itself moved, not its target


def test_rename_noreplace(fs: Any, root_dir: Path, ref: Path) -> None:
    with pytest.raises(FileExistsError) as ei:
        fs.rename("f", "e", noreplace=True)
    assert ei.value.filename == "f"
    assert (root_dir / "e").read_bytes() == b""
    fs.rename("f", "new", noreplace=True)
    assert (root_dir / "new").read_bytes() == b"hello\n"


def test_exchange(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.exchange("f", "d")
    assert (root_dir / "d").read_bytes() == b"hello\n"
    assert (root_dir / "f" / "g").exists()
    fs.exchange("lf", "e")
    assert os.readlink(root_dir / "e") == "f"
    with pytest.raises(FileNotFoundError):
        fs.exchange("f", "missing")


def test_move(fs: Any, root_dir: Path, ref: Path) -> None:
    with pytest.raises(FileExistsError):
        fs.move("f", "e")
    assert (root_dir / "e").read_bytes() == b""
    fs.move("f", "e", overwrite=True)
    assert (root_dir / "e").read_bytes() == b"hello\n" and not (root_dir / "f").exists()
    fs.move("d", "d2")
    assert (root_dir / "d2" / "sub" / "h").exists()
    fs.move("lf", "lf2")
    assert os.readlink(root_dir / "lf2") == "f"
    with pytest.raises(FileNotFoundError):
        fs.move("missing", "x")


# ---------------------------------------------------------------------------------- metadata


def test_chmod(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.chmod("f", 0o600)
    assert stat.S_IMODE(os.stat(root_dir / "f").st_mode) == 0o600
    fs.chmod("d", 0o700)
    assert stat.S_IMODE(os.stat(root_dir / "d").st_mode) == 0o700
    with pytest.raises(OSError) as ei:
        fs.chmod("lf", 0o777)
    assert ei.value.filename == "lf"
    assert stat.S_IMODE(os.stat(root_dir / "f").st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        fs.chmod("missing", 0o600)


def test_chown(fs: Any, root_dir: Path, ref: Path) -> None:
    if not IS_ROOT:
        fs.chown("f", -1, -1)
        return
    fs.chown("f", 1234, 2345)
    st = os.stat(root_dir / "f")
    assert (st.st_uid, st.st_gid) == (1234, 2345)
    fs.chown("lf", 3456, -1)  # the link itself (lchown)
    assert os.lstat(root_dir / "lf").st_uid == 3456
    assert os.stat(root_dir / "f").st_uid == 1234


def test_utime(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.utime("f", ns=(1_000_000_123, 2_000_000_456))
    st = os.stat(root_dir / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    before = os.stat(root_dir / "f").st_mtime_ns
    fs.utime("lf", ns=(5, 6))  # never through a final link
    assert os.lstat(root_dir / "lf").st_mtime_ns == 6
    assert os.stat(root_dir / "f").st_mtime_ns == before
    fs.utime("e")
    import time
    assert abs(os.stat(root_dir / "e").st_mtime_ns - time.time_ns()) < 10 * 10**9
    with pytest.raises(FileNotFoundError):
        fs.utime("missing")


def test_truncate(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.truncate("f", 2)
    assert (root_dir / "f").read_bytes() == b"he"
    fs.truncate("lf", 1)  # follows an in-tree link
    assert (root_dir / "f").read_bytes() == b"h"
    assert os.path.islink(root_dir / "lf")
    fs.truncate("e", 10)
    assert (root_dir / "e").read_bytes() == b"\0" * 10
    for p in ("missing", "d", "f/"):
        same(lambda: fs.truncate(p, 0), lambda: os.truncate(os.path.join(str(ref), p), 0), p)


# ---------------------------------------------------------------------------------- data


def test_read_write_file(fs: Any, root_dir: Path, ref: Path) -> None:
    assert fs.read_file("f") == b"hello\n"
    assert fs.read_file(b"lf") == b"hello\n"
    fs.write_file("new", b"abc")
    assert (root_dir / "new").read_bytes() == b"abc"
    fs.write_file("new", b"x" * 100_000)
    assert (root_dir / "new").read_bytes() == b"x" * 100_000
    fs.write_file("lf", b"through")  # follows the in-tree link, keeps it
    assert os.path.islink(root_dir / "lf")
    assert (root_dir / "f").read_bytes() == b"through"
    for p, exc in [("missing", FileNotFoundError), ("d", IsADirectoryError), ("f/", NotADirectoryError)]:
        with pytest.raises(exc) as ei:
            fs.read_file(p)
        assert ei.value.filename == p
    with pytest.raises(FileNotFoundError):
        fs.write_file("nodir/x", b"x")
    with pytest.raises(IsADirectoryError):
        fs.write_file("d", b"x")
    names = set(os.listdir(root_dir))
    assert names == {"f", "e", "d", "lf", "ld", "dang", "ldot", "fifo", "new"}, "temporary left behind"


def test_write_file_keeps_mode_and_applies_new_mode(fs: Any, root_dir: Path, ref: Path) -> None:
    os.chmod(root_dir / "f", 0o600)
    fs.write_file("f", b"x")
    assert stat.S_IMODE(os.stat(root_dir / "f").st_mode) == 0o600
    old = os.umask(0o022)
    try:
        fs.write_file("m", b"x", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root_dir / "m").st_mode) == 0o640


def test_read_file_fifo_does_not_block(fs: Any, ref: Path) -> None:
    with pytest.raises(OSError):
        call_with_timeout(lambda: fs.read_file("fifo"), 5)


def test_write_file_is_atomic(fs: Any, root_dir: Path, ref: Path) -> None:
    """A reader never sees a partial file while write_file replaces it."""
    big_a, big_b = b"a" * 1_000_000, b"b" * 1_000_000
    fs.write_file("atom", big_a)
    stop = threading.Event()
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = (root_dir / "atom").read_bytes()
            except FileNotFoundError:
                bad.append(-1)
                continue
            if data not in (big_a, big_b):
                bad.append(len(data))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            fs.write_file("atom", big_b if i % 2 else big_a)
    finally:
        stop.set()
        t.join()
    assert not bad


# ---------------------------------------------------------------------------------- open


def test_open_fd_is_close_on_exec(fs: Any, root_dir: Path) -> None:
    """An fd the daemon passes back never leaks into a child the backend starts (runc's
    CVE-2024-21626 class): close-on-exec from the moment it arrives."""
    import subprocess
    import sys

    (root_dir / "f").write_bytes(b"x")
    with fs.open("f", "rb") as f:
        fd = f.fileno()
        assert not os.get_inheritable(fd)
        child = subprocess.run([sys.executable, "-c", f"import os; os.fstat({fd})"], close_fds=False,
                               capture_output=True, text=True)
        assert child.returncode != 0 and "Bad file descriptor" in child.stderr, child


def test_open_modes(fs: Any, root_dir: Path, ref: Path) -> None:
    with fs.open("f") as f:
        assert isinstance(f, io.TextIOBase) and f.read() == "hello\n"
    with fs.open("f", "rb") as f:
        assert isinstance(f, io.BufferedIOBase) and f.read() == b"hello\n"
        assert os.fstat(f.fileno()).st_ino == os.stat(root_dir / "f").st_ino
    with fs.open("w1", "w") as f:
        f.write("one")
    assert (root_dir / "w1").read_text() == "one"
    with fs.open("w1", "a") as f:
        f.write("two")
    assert (root_dir / "w1").read_text() == "onetwo"
    with fs.open("w1", "r+") as f:
        f.write("ON")
    assert (root_dir / "w1").read_text() == "ONetwo"
    with pytest.raises(FileExistsError):
        fs.open("w1", "x")
    with fs.open("x1", "x") as f:
        f.write("x")
    with fs.open("x1", "rb", buffering=0) as f:
        assert isinstance(f, io.RawIOBase)
    with fs.open("t", "w", encoding="latin-1") as f:
        f.write("\xe9")
    assert (root_dir / "t").read_bytes() == b"\xe9"
    with fs.open("lf", "r") as f:  # follows an in-tree link
        assert f.read() == "hello\n"


@pytest.mark.parametrize("p,exc", [("d", IsADirectoryError), ("missing", FileNotFoundError),
                                   ("f/", NotADirectoryError), ("dang", FileNotFoundError)])
def test_open_errors_like_os(fs: Any, ref: Path, p: str, exc: type) -> None:
    with pytest.raises(exc) as ei:
        fs.open(p, "r")
    assert ei.value.filename == p
    with pytest.raises(exc):
        open(str(ref / p) + ("/" if p.endswith("/") else ""), "r")


@pytest.mark.parametrize("mode", ["r", "rb", "w", "a", "r+"])
def test_open_fifo_refused_without_blocking(fs: Any, ref: Path, mode: str) -> None:
    with pytest.raises(OSError):
        f = call_with_timeout(lambda: fs.open("fifo", mode), 5)
        f.close()


# ---------------------------------------------------------------------------------- copies


def test_copy_file(fs: Any, root_dir: Path, ref: Path) -> None:
    os.chmod(root_dir / "f", 0o640)
    fs.copy_file("f", "c")
    assert (root_dir / "c").read_bytes() == b"hello\n"
    assert stat.S_IMODE(os.stat(root_dir / "c").st_mode) == 0o640
    fs.copy_file("e", "c")  # overwrite=True by default
    assert (root_dir / "c").read_bytes() == b""
    with pytest.raises(FileExistsError):
        fs.copy_file("f", "c", overwrite=False)
    assert (root_dir / "c").read_bytes() == b""
    fs.copy_file("lf", "c2")  # source followed
    assert not os.path.islink(root_dir / "c2") and (root_dir / "c2").read_bytes() == b"hello\n"
    (root_dir / "big").write_bytes(os.urandom(3_000_000))
    for how in ("auto", "never"):
        fs.copy_file("big", f"big.{how}", reflink=how)
        assert (root_dir / f"big.{how}").read_bytes() == (root_dir / "big").read_bytes()
    with pytest.raises(FileNotFoundError):
        fs.copy_file("missing", "c3")
    with pytest.raises(OSError):
        fs.copy_file("d", "c3")
    with pytest.raises(OSError):
        call_with_timeout(lambda: fs.copy_file("fifo", "c3"), 5)
    assert not os.path.exists(root_dir / "c3")
    names = set(os.listdir(root_dir))
    assert names == {"f", "e", "d", "lf", "ld", "dang", "ldot", "fifo", "c", "c2", "big",
                     "big.auto", "big.never"}, "temporary left behind"


def test_cp(fs: Any, root_dir: Path, ref: Path) -> None:
    os.symlink("g", root_dir / "d" / "lg")
    os.symlink("/etc/passwd", root_dir / "d" / "abs")
    with pytest.raises(OSError):
        fs.cp("d", "d2")  # a directory needs recursive=True
    fs.cp("d", "d2", recursive=True)
    assert (root_dir / "d2" / "sub" / "h").read_bytes() == b"h\n"
    assert os.readlink(root_dir / "d2" / "lg") == "g"  # links copied as links
    assert os.readlink(root_dir / "d2" / "abs") == "/etc/passwd"
    fs.cp("f", "f2")
    assert (root_dir / "f2").read_bytes() == b"hello\n"
    fs.cp("ld", "d3", recursive=True)  # the top-level source is followed
    assert os.path.isdir(root_dir / "d3") and not os.path.islink(root_dir / "d3")
    os.utime(root_dir / "f", ns=(10**9, 2 * 10**9))
    fs.cp("f", "f3", preserve=True)
    assert os.stat(root_dir / "f3").st_mtime_ns == 2 * 10**9
    with pytest.raises(FileNotFoundError):
        fs.cp("missing", "x", recursive=True)


def test_cp_preserve_copies_xattrs_like_copy2(fs: Any, root_dir: Path, ref: Path) -> None:
    """preserve=True copies extended attributes of files and directories (cp -a,
    shutil.copy2/copytree); preserve=False and copy_file do not (shutil.copy)."""
    import shutil

    try:
        os.setxattr(root_dir / "f", "user.tag", b"file")
        os.setxattr(ref / "f", "user.tag", b"file")
    except OSError as e:
        pytest.skip(f"no user xattrs here: {e}")
    os.setxattr(root_dir / "d", "user.tag", b"dir")
    os.setxattr(root_dir / "d" / "sub" / "h", "user.big", b"x" * 3000)
    fs.cp("f", "fp", preserve=True)
    shutil.copy2(ref / "f", ref / "fp")
    assert os.getxattr(root_dir / "fp", "user.tag") == os.getxattr(ref / "fp", "user.tag") == b"file"
    fs.cp("d", "dp", recursive=True, preserve=True)
    assert os.getxattr(root_dir / "dp", "user.tag") == b"dir"
    assert os.getxattr(root_dir / "dp" / "sub" / "h", "user.big") == b"x" * 3000
    fs.cp("d", "dn", recursive=True, preserve=False)
    fs.copy_file("f", "fc")
    shutil.copy(ref / "f", ref / "fc")
    assert os.listxattr(root_dir / "dn") == [] and os.listxattr(root_dir / "dn" / "sub" / "h") == []
    assert os.listxattr(root_dir / "fc") == os.listxattr(ref / "fc") == []


# ---------------------------------------------------------------------------------- fifo


def test_mkfifo(fs: Any, root_dir: Path, ref: Path) -> None:
    fs.mkfifo("p")
    assert stat.S_ISFIFO(os.lstat(root_dir / "p").st_mode)
    with pytest.raises(FileExistsError):
        fs.mkfifo("p")
    with pytest.raises(PermissionError):
        fs.mkfifo("dev", stat.S_IFCHR | 0o600)
    with pytest.raises(PermissionError):
        fs.mkfifo("blk", stat.S_IFBLK | 0o600)
    assert not os.path.lexists(root_dir / "dev")


# ---------------------------------------------------------------------------------- edges


@pytest.mark.parametrize("p", ["", ".", "./", "d/..", "..", "../", "d/../.."])
def test_edge_components(fs: Any, root_dir: Path, ref: Path, p: str) -> None:
    if p in ("..", "../", "d/../.."):
        with pytest.raises(EscapeError):
            fs.stat(p)
        return
    if p == "":
        with pytest.raises(FileNotFoundError):
            fs.stat(p)
        return
    assert fs.stat(p).st_ino == os.stat(root_dir).st_ino
    with pytest.raises(OSError):
        fs.unlink(p)
    with pytest.raises(OSError):
        fs.rmdir(p)
    with pytest.raises(OSError):
        fs.rm(p, recursive=True)
    assert os.path.isdir(root_dir) and os.path.exists(root_dir / "f")


def test_errors_never_name_the_root(fs: Any, root_dir: Path, ref: Path) -> None:
    for call in (lambda: fs.stat("missing"), lambda: fs.read_file("d"), lambda: fs.rename("missing", "x"),
                 lambda: fs.mkdir("f"), lambda: fs.rmdir("f"), lambda: fs.open("missing")):
        with pytest.raises(OSError) as ei:
            call()
        assert str(root_dir) not in str(ei.value)
        assert ei.value.strerror


def test_type_errors(fs: Any, ref: Path) -> None:
    with pytest.raises((TypeError, ValueError)):
        fs.stat(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fs.stat("a\0b")
