"""FIFOs and sockets inside trees: ``cp -r``, ``rm -r``, ``walk``, ``du`` and ``move`` never block.

A tree holds FIFOs (no writer: opening one for reading would block forever) and an
AF_UNIX socket bound and listening (opening it would fail with ENXIO; connecting to it
would reach the test's listener).  Every call is run under a timeout.  ``cp -r`` does what
``cp -a`` does with a FIFO: a FIFO at the copy, with its mode, owner and times when
preserving, replacing a non-directory already there.  Sockets are skipped, where
``cp -a`` makes a new socket inode with ``mknod``: such an inode has no listener (a
connect to it is refused), and the daemon's Landlock domain does not hold
``MAKE_SOCK`` on purpose (docs/SECURITY.md, "Faults and hostile trees").  The top-level
FIFO cases (``open``, ``read_file``, ``copy_file`` refused without blocking) are in
tests/test_behaviour.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from _util import call_with_timeout, du_by_path, mounted_tmpfs

T = 10  # seconds: any call that blocks on a FIFO fails the test instead of hanging it
MTIME = 978307200 * 10**9  # 2001-01-01


@pytest.fixture
def tree(root_dir: Path) -> Iterator[Path]:
    """``t/`` with a FIFO (0640, old times), a listening socket, a nested FIFO, a file and a
    link; the socket's listener stays open for the test."""
    t = root_dir / "t"
    (t / "sub").mkdir(parents=True)
    os.mkfifo(t / "fifo", 0o640)
    os.chmod(t / "fifo", 0o640)
    os.mkfifo(t / "sub" / "fifo2")
    (t / "sub" / "file").write_bytes(b"data\n")
    os.symlink("fifo", t / "lfifo")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(t / "sock"))
    s.listen()
    for p in ("fifo", "sock", "lfifo"):
        os.utime(t / p, ns=(MTIME, MTIME), follow_symlinks=False)
    os.lchown(t / "fifo", 1234, 5678)
    try:
        yield t
    finally:
        s.close()


def kinds(top: Path) -> dict[str, str]:
    out = {}
    for dp, dns, fns in os.walk(top):
        for n in dns + fns:
            p = os.path.join(dp, n)
            out[os.path.relpath(p, top)] = stat.filemode(os.lstat(p).st_mode)[0]
    return out


def test_cp_r_copies_fifos_as_fifos_and_skips_sockets(fs: Any, root_dir: Path, tree: Path) -> None:
    call_with_timeout(lambda: fs.cp("t", "t2", recursive=True), T)
    got = kinds(root_dir / "t2")
    assert got == {"fifo": "p", "sub": "d", "sub/fifo2": "p", "sub/file": "-", "lfifo": "l"}, got
    st = os.lstat(root_dir / "t2" / "fifo")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == MTIME
    assert (st.st_uid, st.st_gid) == ((1234, 5678) if os.geteuid() == 0 else (os.getuid(), os.getgid()))
    if shutil.which("cp"):  # GNU cp -a: the same, and a socket inode made by mknod
        r = subprocess.run(["cp", "-a", str(tree), str(root_dir / "gnu")], capture_output=True, timeout=T)
        assert r.returncode == 0, r.stderr
        gnu = kinds(root_dir / "gnu")
        assert gnu.pop("sock") == "s" and gnu == got
        g = os.lstat(root_dir / "gnu" / "fifo")
        assert (g.st_mode, g.st_mtime_ns, g.st_uid) == (st.st_mode, st.st_mtime_ns, st.st_uid)
    call_with_timeout(lambda: fs.cp("t", "t3", recursive=True, preserve=False), T)
    assert stat.S_ISFIFO(os.lstat(root_dir / "t3" / "fifo").st_mode)
    assert os.lstat(root_dir / "t3" / "fifo").st_mtime_ns != MTIME


def test_cp_r_replaces_what_is_in_the_way(fs: Any, root_dir: Path, tree: Path) -> None:
    """Over an existing copy: a regular file where the FIFO goes becomes the FIFO (as
    ``cp -a``), a FIFO where the file goes becomes the file; a directory in the way is an
    error for that entry; no temporary name is left."""
    d = root_dir / "t2"
    (d / "sub").mkdir(parents=True)
    (d / "fifo").write_bytes(b"in the way")
    os.mkfifo(d / "sub" / "file")
    (d / "sub" / "fifo2").mkdir()
    with pytest.raises(IsADirectoryError):
        call_with_timeout(lambda: fs.cp("t", "t2", recursive=True), T)
    got = kinds(d)
    assert got["fifo"] == "p" and got["sub/file"] == "-" and got["sub/fifo2"] == "d", got
    assert (d / "sub" / "file").read_bytes() == b"data\n"
    assert not [n for n in got if ".beneathd-" in n]


def test_rm_r_walk_and_du_of_a_tree_with_fifos_and_a_socket(fs: Any, root_dir: Path, tree: Path) -> None:
    walked = call_with_timeout(lambda: list(fs.walk("t")), T)
    files = {os.path.join(dp, n) for dp, _, fns in walked for n in fns}
    assert files == {"t/fifo", "t/sock", "t/lfifo", "t/sub/fifo2", "t/sub/file"}
    assert call_with_timeout(lambda: fs.du("t"), T) == du_by_path(tree)
    entries = {e.name: (e.is_file(), e.is_dir()) for e in call_with_timeout(lambda: fs.scandir("t"), T)}
    assert entries["fifo"] == entries["sock"] == (False, False)
    call_with_timeout(lambda: fs.rm("t", recursive=True), T)
    assert not tree.exists()
    assert fs.exists(".")


def test_move_across_a_mount_keeps_fifos(fs: Any, root_dir: Path, tree: Path) -> None:
    """``move`` onto another file system inside the root copies then removes: the FIFOs
    arrive; the socket, skipped by the copy, is removed with the source (its file is
    only a name: the listener's socket lives on, and a copied inode would have none)."""
    with mounted_tmpfs(root_dir / "mnt", "16m") as mnt:
        call_with_timeout(lambda: fs.move("t", "mnt/t"), T)
        assert not tree.exists()
        assert kinds(mnt / "t") == {"fifo": "p", "sub": "d", "sub/fifo2": "p", "sub/file": "-", "lfifo": "l"}
        shutil.rmtree(mnt / "t")


@pytest.mark.skipif(os.geteuid() != 0, reason="starts the daemon as root")
def test_real_daemon_copies_fifos_under_landlock(tmp_path: Path) -> None:
    """The deployed daemon (dropped to nobody, Landlock: MAKE_FIFO held, MAKE_SOCK not,
    with its crash journal): the FIFO replaces the file in its way, keeps its mode and
    times, the socket is skipped, nothing blocks."""
    from beneathd.client import Client
    from test_daemon import chown_tree, start_daemon

    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    os.mkfifo(root / "t" / "fifo", 0o640)
    os.chmod(root / "t" / "fifo", 0o640)
    os.utime(root / "t" / "fifo", ns=(MTIME, MTIME))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(root / "t" / "sock"))
    s.listen()
    (root / "t2").mkdir()
    (root / "t2" / "fifo").write_bytes(b"in the way")
    chown_tree(root)
    try:
        with start_daemon(tmp_path, root=root) as d, Client(d.sock, timeout=T) as c:
            c.cp("t", "t2", recursive=True)
            st = os.lstat(root / "t2" / "fifo")
            assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == MTIME
            assert sorted(os.listdir(root / "t2")) == ["fifo"]
            walked = list(c.walk("t"))
            assert c.du("t")[1] == 3 and len(walked) == 1 and sorted(walked[0][2]) == ["fifo", "sock"]
            c.rm("t2", recursive=True)
            assert not (root / "t2").exists()
    finally:
        s.close()
