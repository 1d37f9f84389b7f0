"""``NaiveRoot``: the classic, broken way to confine file operations to a directory.

DO NOT USE.  This is the control group of the race suite (tests/test_race.py): it looks
careful -- every path is canonicalised with ``os.path.realpath`` and checked to lie under
the root before anything is done, so it passes the simple cases of the static escape
table -- but the check and the action are two separate path walks.  Between them an
attacker who can rename things inside the tree can swap a checked directory for a symlink
to anywhere (a TOCTOU race: rsync CVE-2024-12087/12088, runc CVE-2024-21626, ...), and the
second walk, done by the kernel on an absolute path, follows it out.

A race harness that cannot catch this class proves nothing about ``Root``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as _stat
from typing import IO, Any

from beneathd.protocol import EscapeError
from beneathd.protocol.types import AtomicFile

__all__ = ["NaiveRoot", "NaiveWatch"]


class NaiveRoot:
    def __init__(self, path: str | bytes | os.PathLike[Any]) -> None:
        self.root = os.path.realpath(os.fsdecode(os.fspath(path)))

    def close(self) -> None:
        pass

    def __enter__(self) -> NaiveRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the "security" ----------------------------------------------------------------

    def _check(self, real: str, path: Any) -> str:
        if real != self.root and not real.startswith(self.root + os.sep):
            raise EscapeError(path)
        return real

    def _resolve(self, path: Any) -> str:
        """Follow everything, then check (for operations that follow a final link)."""
        p = os.fsdecode(os.fspath(path))
        if os.path.isabs(p):
            raise EscapeError(path)
        return self._check(os.path.realpath(os.path.join(self.root, p)), path)

    def _resolve_parent(self, path: Any) -> str:
        """Resolve the parent, keep the final component (operations on the link itself)."""
        p = os.fsdecode(os.fspath(path))
        if os.path.isabs(p):
            raise EscapeError(path)
        head, tail = os.path.split(p.rstrip("/"))
        if tail in ("", ".", ".."):
            return self._resolve(path)
        parent = self._check(os.path.realpath(os.path.join(self.root, head)), path)
        return os.path.join(parent, tail)

    # -- reads ---------------------------------------------------------------------------

    def stat(self, path: Any, *, follow_symlinks: bool = True) -> os.stat_result:
        if follow_symlinks:
            return os.stat(self._resolve(path))
        return os.lstat(self._resolve_parent(path))

    def lstat(self, path: Any) -> os.stat_result:
        return self.stat(path, follow_symlinks=False)

    def exists(self, path: Any) -> bool:
        return os.path.exists(self._resolve(path))

    def listdir(self, path: Any = ".") -> list[Any]:
        names = os.listdir(self._resolve(path))
        return [os.fsencode(n) for n in names] if isinstance(path, bytes) else names

    def scandir(self, path: Any = ".") -> list[os.DirEntry[str]]:
        with os.scandir(self._resolve(path)) as it:
            return list(it)

    def readlink(self, path: Any) -> Any:
        return os.readlink(self._resolve_parent(path))

    def realpath(self, path: Any) -> str:
        return os.path.relpath(self._resolve(path), self.root)

    def read_file(self, path: Any) -> bytes:
        with open(self._resolve(path), "rb") as f:
            return f.read()

    def open(self, path: Any, mode: str = "r", *, buffering: int = -1, encoding: str | None = None,
             perms: int = 0o666, atomic: bool = False) -> IO[Any]:
        real = self._resolve(path)
        if os.path.isdir(real):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if atomic:  # the usual way: a temporary beside the checked path, renamed over it
            tmp = real + ".tmp"
            f = open(tmp, mode.replace("x", "w"), buffering=buffering, encoding=encoding)
            return AtomicFile(f, lambda: os.replace(tmp, real), lambda: os.unlink(tmp), path)  # type: ignore[return-value]
        return open(real, mode, buffering=buffering, encoding=encoding)

    def walk(self, top: Any = ".", *, top_down: bool = True, follow_symlinks: bool = False) -> Any:
        real = self._resolve(top)
        for dirpath, dirnames, filenames in os.walk(real, topdown=top_down, followlinks=follow_symlinks):
            rel = os.path.relpath(dirpath, self.root)
            yield rel, dirnames, filenames

    def du(self, path: Any = ".", *, progress: Any = None) -> tuple[int, int]:
        from _util import du_by_path

        return du_by_path(self._resolve_parent(path))

    # -- namespace -------------------------------------------------------------------------

    def mkdir(self, path: Any, mode: int = 0o777, *, parents: bool = False, exist_ok: bool = False) -> None:
        from pathlib import Path

        Path(self._resolve_parent(path)).mkdir(mode, parents=parents, exist_ok=exist_ok)

    def unlink(self, path: Any, *, missing_ok: bool = False) -> None:
        try:
            os.unlink(self._resolve_parent(path))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self, path: Any) -> None:
        os.rmdir(self._resolve_parent(path))

    def rename(self, src: Any, dst: Any, *, noreplace: bool = False) -> None:
        s, d = self._resolve_parent(src), self._resolve_parent(dst)
        if noreplace and os.path.lexists(d):
            raise FileExistsError(errno.EEXIST, "File exists", dst)
        os.rename(s, d)

    def exchange(self, a: Any, b: Any) -> None:
        x, y = self._resolve_parent(a), self._resolve_parent(b)
        tmp = x + ".xchg"
        os.rename(x, tmp)
        os.rename(y, x)
        os.rename(tmp, y)

    def move(self, src: Any, dst: Any, *, overwrite: bool = False) -> None:
        s, d = self._resolve_parent(src), self._resolve_parent(dst)
        if not overwrite and os.path.lexists(d):
            raise FileExistsError(errno.EEXIST, "File exists", dst)
        shutil.move(s, d)

    def link(self, src: Any, dst: Any) -> None:
        os.link(self._resolve_parent(src), self._resolve_parent(dst), follow_symlinks=False)

    def symlink(self, target: Any, path: Any) -> None:
        os.symlink(target, self._resolve_parent(path))

    def mkfifo(self, path: Any, mode: int = 0o666) -> None:
        os.mkfifo(self._resolve_parent(path), mode)

    # -- metadata ---------------------------------------------------------------------------

    def chmod(self, path: Any, mode: int) -> None:
        real = self._resolve_parent(path)
        if os.path.islink(real):
            raise OSError(errno.EOPNOTSUPP, "cannot chmod a symlink", path)
        os.chmod(real, mode)  # ...which follows whatever is there *now*

    def chown(self, path: Any, uid: int, gid: int) -> None:
        os.lchown(self._resolve_parent(path), uid, gid)

    def utime(self, path: Any, *, ns: tuple[int, int] | None = None) -> None:
        real = self._resolve_parent(path)
        if os.path.islink(real):
            os.utime(real, ns=ns, follow_symlinks=False)
        else:
            os.utime(real, ns=ns)

    def truncate(self, path: Any, length: int) -> None:
        os.truncate(self._resolve(path), length)

    # -- data ---------------------------------------------------------------------------------

    def write_file(self, path: Any, data: bytes, *, mode: int = 0o666) -> None:
        real = self._resolve(path)
        tmp = real + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, real)

    def copy_file(self, src: Any, dst: Any, *, overwrite: bool = True, reflink: str = "auto") -> None:
        s, d = self._resolve(src), self._resolve(dst)
        if not overwrite and os.path.lexists(d):
            raise FileExistsError(errno.EEXIST, "File exists", dst)
        shutil.copyfile(s, d)

    def cp(self, src: Any, dst: Any, *, recursive: bool = False, overwrite: bool = True,
           preserve: bool = True) -> None:
        s, d = self._resolve(src), self._resolve(dst)
        if os.path.isdir(s):
            if not recursive:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", src)
            shutil.copytree(s, d, symlinks=True, dirs_exist_ok=overwrite)
        else:
            shutil.copy2(s, d, follow_symlinks=False)

    def rm(self, path: Any, *, recursive: bool = False, force: bool = False) -> None:
        real = self._resolve_parent(path)
        try:
            st = os.lstat(real)
            if _stat.S_ISDIR(st.st_mode):
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
                _rmtree_by_path(real)
            else:
                os.unlink(real)
        except FileNotFoundError:
            if not force:
                raise


def _rmtree_by_path(top: str) -> None:
    """The classic hand-written ``rm -r``: walk by path, children first."""
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        for n in filenames:
            os.unlink(os.path.join(dirpath, n))
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                os.unlink(p)
            else:
                os.rmdir(p)
    os.rmdir(top)


def _naive_batch(self: NaiveRoot, calls: Any, *, stop_on_error: bool = False) -> list[Any]:
    """The same loop as Root.batch, over the naive methods."""
    from beneathd.protocol.batch import run_batch

    return run_batch(self, calls, stop_on_error)


NaiveRoot.batch = _naive_batch  # type: ignore[attr-defined]


class NaiveWatch:
    """The obvious recursive watch: ``inotify_add_watch`` by path, each new directory's
    path checked with ``os.path.realpath`` first. DO NOT USE: between the check and the
    kernel's own path walk in ``inotify_add_watch`` the directory can be swapped for a link
    out, and the watch lands outside (tests/test_watch.py's race catches it)."""

    _MASK = 0x2 | 0x4 | 0x40 | 0x80 | 0x100 | 0x200

    def __init__(self, root: str | os.PathLike[str]) -> None:
        import ctypes
        import ctypes.util

        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.root = os.path.realpath(os.fspath(root))
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self.paths: dict[int, str] = {}
        self.pending: list[Any] = []
        for dp, _, _ in os.walk(self.root):
            self._add(dp)

    def _add(self, path: str) -> None:
        try:
            real = os.path.realpath(path)
        except OSError:
            return  # changed under realpath's own walk
        if real != self.root and not real.startswith(self.root + os.sep):
            return  # the check
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), self._MASK)  # the second walk
        if wd >= 0:
            self.paths[wd] = os.path.relpath(path, self.root)

    def next(self, timeout: float | None = None) -> Any:
        import select
        import struct

        from beneathd.protocol.types import WatchEvent

        while not self.pending:
            p = select.poll()
            p.register(self.fd, select.POLLIN)
            if not p.poll(None if timeout is None else timeout * 1000):
                raise TimeoutError(errno.ETIMEDOUT, "no event")
            data = os.read(self.fd, 65536)
            off = 0
            while off < len(data):
                wd, mask, cookie, ln = struct.unpack_from("iIII", data, off)
                name = os.fsdecode(data[off + 16:off + 16 + ln].rstrip(b"\0"))
                off += 16 + ln
                if wd not in self.paths or not name:
                    continue
                rel = os.path.normpath(os.path.join(self.paths[wd], name))
                is_dir = bool(mask & 0x40000000)
                if is_dir and mask & (0x100 | 0x80):
                    self._add(os.path.join(self.root, rel))
                self.pending.append(WatchEvent("created", rel, is_dir, cookie))
        return self.pending.pop(0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NaiveWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
