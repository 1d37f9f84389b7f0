"""The API methods of ``Client`` and ``AsyncClient``, one per entry of the method table.

Written by ``python -m beneathd.client._generate`` from protocol/methods.py: do not edit;
change the table (or the generator) and run it again (tests/test_generated.py checks).
Each method encodes its arguments as the table's wire types say and hands the caller's
values and the wire parameters to the client's ``_call``.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Iterator

from ..protocol.types import DirEntry, Progress
from ._common import _FSENC, _FSERR, SPECS, Spec, _data, _fs, _int, _ns, _open_check

if TYPE_CHECKING:
    from ._async import AsyncWatch
    from ._sync import Watch

__all__ = ["SyncMethods", "AsyncMethods", "ENCODERS", "PathArg"]

#: what a path argument may be: ``str`` and ``bytes`` results echo its type
PathArg = str | bytes | os.PathLike[Any]
_fspath = os.fspath

_S_stat = SPECS['stat']
_S_lstat = SPECS['lstat']
_S_exists = SPECS['exists']
_S_listdir = SPECS['listdir']
_S_scandir = SPECS['scandir']
_S_du = SPECS['du']
_S_walk = SPECS['walk']
_S_watch = SPECS['watch']
_S_readlink = SPECS['readlink']
_S_realpath = SPECS['realpath']
_S_mkdir = SPECS['mkdir']
_S_unlink = SPECS['unlink']
_S_rmdir = SPECS['rmdir']
_S_rename = SPECS['rename']
_S_exchange = SPECS['exchange']
_S_move = SPECS['move']
_S_link = SPECS['link']
_S_symlink = SPECS['symlink']
_S_chmod = SPECS['chmod']
_S_chown = SPECS['chown']
_S_utime = SPECS['utime']
_S_truncate = SPECS['truncate']
_S_copy_file = SPECS['copy_file']
_S_cp = SPECS['cp']
_S_rm = SPECS['rm']
_S_mkfifo = SPECS['mkfifo']
_S_read_file = SPECS['read_file']
_S_write_file = SPECS['write_file']
_S_open = SPECS['open']
_S_batch = SPECS['batch']
_S_stats = SPECS['stats']


class SyncMethods:
    """``Client``'s methods (blocking)."""

    __slots__ = ()

    if TYPE_CHECKING:
        def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        def _stream(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        def _watch(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        def _batch(self, calls: Iterable[Any], stop_on_error: bool, timeout: float | None) -> list[Any]: ...

    def stat(self, path: PathArg, *, follow_symlinks: bool = True, timeout: float | None = None) -> os.stat_result:
        """os.stat beneath the root."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = follow_symlinks if follow_symlinks.__class__ is bool else bool(follow_symlinks)
        return self._call(_S_stat, (path, follow_symlinks, ), [w0, w1], timeout)

    def lstat(self, path: PathArg, *, timeout: float | None = None) -> os.stat_result:
        """os.lstat beneath the root."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_lstat, (path, ), [w0], timeout)

    def exists(self, path: PathArg, *, timeout: float | None = None) -> bool:
        """True if path exists; escapes still raise."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_exists, (path, ), [w0], timeout)

    def listdir(self, path: PathArg = '.', *, timeout: float | None = None) -> list[Any]:
        """os.listdir."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_listdir, (path, ), [w0], timeout)

    def scandir(self, path: PathArg = '.', *, timeout: float | None = None) -> list[DirEntry]:
        """os.scandir, as a list."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_scandir, (path, ), [w0], timeout)

    def du(self, path: PathArg = '.', *, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> tuple[int, int]:
        """(bytes_on_disk, entries) of a tree, never following links."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_du, (path, progress, ), [w0], timeout)

    def walk(self, top: PathArg = '.', *, top_down: bool = True, follow_symlinks: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> Iterator[tuple[Any, list[Any], list[Any]]]:
        """pathlib.Path.walk beneath the root, streamed."""
        return self._stream(_S_walk, *_encode_walk(top, top_down=top_down, follow_symlinks=follow_symlinks, progress=progress), timeout)

    def watch(self, path: PathArg = '.', *, recursive: bool = True, max_queue: int = 4096, timeout: float | None = None) -> Watch:
        """change events beneath path, streamed until closed."""
        return self._watch(_S_watch, *_encode_watch(path, recursive=recursive, max_queue=max_queue), timeout)

    def readlink(self, path: PathArg, *, timeout: float | None = None) -> Any:
        """os.readlink."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_readlink, (path, ), [w0], timeout)

    def realpath(self, path: PathArg, *, timeout: float | None = None) -> Any:
        """canonical path relative to the root."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_realpath, (path, ), [w0], timeout)

    def mkdir(self, path: PathArg, mode: int = 0o777, *, parents: bool = False, exist_ok: bool = False, timeout: float | None = None) -> None:
        """pathlib.Path.mkdir."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = mode if mode.__class__ is int else _int(mode)
        w2 = parents if parents.__class__ is bool else bool(parents)
        w3 = exist_ok if exist_ok.__class__ is bool else bool(exist_ok)
        return self._call(_S_mkdir, (path, mode, parents, exist_ok, ), [w0, w1, w2, w3], timeout)

    def unlink(self, path: PathArg, *, missing_ok: bool = False, timeout: float | None = None) -> None:
        """os.unlink."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = missing_ok if missing_ok.__class__ is bool else bool(missing_ok)
        return self._call(_S_unlink, (path, missing_ok, ), [w0, w1], timeout)

    def rmdir(self, path: PathArg, *, timeout: float | None = None) -> None:
        """os.rmdir."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_rmdir, (path, ), [w0], timeout)

    def rename(self, src: PathArg, dst: PathArg, *, noreplace: bool = False, timeout: float | None = None) -> None:
        """renameat2."""
        if src.__class__ is str:
            w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in src:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif src.__class__ is bytes:
            w0 = src
            if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            src = _fspath(src)
            w0 = _fs(src)
        if dst.__class__ is str:
            w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in dst:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif dst.__class__ is bytes:
            w1 = dst
            if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            dst = _fspath(dst)
            w1 = _fs(dst)
        w2 = noreplace if noreplace.__class__ is bool else bool(noreplace)
        return self._call(_S_rename, (src, dst, noreplace, ), [w0, w1, w2], timeout)

    def exchange(self, a: PathArg, b: PathArg, *, timeout: float | None = None) -> None:
        """renameat2(RENAME_EXCHANGE)."""
        if a.__class__ is str:
            w0 = a.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in a:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif a.__class__ is bytes:
            w0 = a
            if 0 in a:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            a = _fspath(a)
            w0 = _fs(a)
        if b.__class__ is str:
            w1 = b.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in b:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif b.__class__ is bytes:
            w1 = b
            if 0 in b:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            b = _fspath(b)
            w1 = _fs(b)
        return self._call(_S_exchange, (a, b, ), [w0, w1], timeout)

    def move(self, src: PathArg, dst: PathArg, *, overwrite: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """rename, or copy then remove across mounts."""
        if src.__class__ is str:
            w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in src:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif src.__class__ is bytes:
            w0 = src
            if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            src = _fspath(src)
            w0 = _fs(src)
        if dst.__class__ is str:
            w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in dst:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif dst.__class__ is bytes:
            w1 = dst
            if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            dst = _fspath(dst)
            w1 = _fs(dst)
        w2 = overwrite if overwrite.__class__ is bool else bool(overwrite)
        return self._call(_S_move, (src, dst, overwrite, progress, ), [w0, w1, w2], timeout)

    def link(self, src: PathArg, dst: PathArg, *, timeout: float | None = None) -> None:
        """hard link, never following src."""
        if src.__class__ is str:
            w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in src:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif src.__class__ is bytes:
            w0 = src
            if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            src = _fspath(src)
            w0 = _fs(src)
        if dst.__class__ is str:
            w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in dst:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif dst.__class__ is bytes:
            w1 = dst
            if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            dst = _fspath(dst)
            w1 = _fs(dst)
        return self._call(_S_link, (src, dst, ), [w0, w1], timeout)

    def symlink(self, target: PathArg, path: PathArg, *, timeout: float | None = None) -> None:
        """os.symlink(target, path)."""
        w0 = _fs(target)
        if path.__class__ is str:
            w1 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w1 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w1 = _fs(path)
        return self._call(_S_symlink, (target, path, ), [w0, w1], timeout)

    def chmod(self, path: PathArg, mode: int, *, timeout: float | None = None) -> None:
        """chmod, never through a final symlink."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = mode if mode.__class__ is int else _int(mode)
        return self._call(_S_chmod, (path, mode, ), [w0, w1], timeout)

    def chown(self, path: PathArg, uid: int, gid: int, *, timeout: float | None = None) -> None:
        """lchown."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = uid if uid.__class__ is int else _int(uid)
        w2 = gid if gid.__class__ is int else _int(gid)
        return self._call(_S_chown, (path, uid, gid, ), [w0, w1, w2], timeout)

    def utime(self, path: PathArg, *, ns: tuple[int, int] | None = None, timeout: float | None = None) -> None:
        """utime, not following a final symlink."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = None if ns is None else _ns('utime', ns)
        return self._call(_S_utime, (path, ns, ), [w0, w1], timeout)

    def truncate(self, path: PathArg, length: int, *, timeout: float | None = None) -> None:
        """os.truncate."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = length if length.__class__ is int else _int(length)
        return self._call(_S_truncate, (path, length, ), [w0, w1], timeout)

    def copy_file(self, src: PathArg, dst: PathArg, *, overwrite: bool = True, reflink: str = 'auto', progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """atomic file copy."""
        if src.__class__ is str:
            w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in src:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif src.__class__ is bytes:
            w0 = src
            if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            src = _fspath(src)
            w0 = _fs(src)
        if dst.__class__ is str:
            w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in dst:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif dst.__class__ is bytes:
            w1 = dst
            if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            dst = _fspath(dst)
            w1 = _fs(dst)
        w2 = overwrite if overwrite.__class__ is bool else bool(overwrite)
        w3 = reflink
        return self._call(_S_copy_file, (src, dst, overwrite, reflink, progress, ), [w0, w1, w2, w3], timeout)

    def cp(self, src: PathArg, dst: PathArg, *, recursive: bool = False, overwrite: bool = True, preserve: bool = True, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """cp [-r]; links copied as links."""
        if src.__class__ is str:
            w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in src:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif src.__class__ is bytes:
            w0 = src
            if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            src = _fspath(src)
            w0 = _fs(src)
        if dst.__class__ is str:
            w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in dst:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif dst.__class__ is bytes:
            w1 = dst
            if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            dst = _fspath(dst)
            w1 = _fs(dst)
        w2 = recursive if recursive.__class__ is bool else bool(recursive)
        w3 = overwrite if overwrite.__class__ is bool else bool(overwrite)
        w4 = preserve if preserve.__class__ is bool else bool(preserve)
        return self._call(_S_cp, (src, dst, recursive, overwrite, preserve, progress, ), [w0, w1, w2, w3, w4], timeout)

    def rm(self, path: PathArg, *, recursive: bool = False, force: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """rm [-r] [-f]."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = recursive if recursive.__class__ is bool else bool(recursive)
        w2 = force if force.__class__ is bool else bool(force)
        return self._call(_S_rm, (path, recursive, force, progress, ), [w0, w1, w2], timeout)

    def mkfifo(self, path: PathArg, mode: int = 0o666, *, timeout: float | None = None) -> None:
        """os.mkfifo."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = mode if mode.__class__ is int else _int(mode)
        return self._call(_S_mkfifo, (path, mode, ), [w0, w1], timeout)

    def read_file(self, path: PathArg, *, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> bytes:
        """whole file contents."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        return self._call(_S_read_file, (path, progress, ), [w0], timeout)

    def write_file(self, path: PathArg, data: bytes | bytearray | memoryview, *, mode: int = 0o666, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """atomic replace."""
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = data if data.__class__ is bytes else _data('write_file', 'data', data)
        w2 = mode if mode.__class__ is int else _int(mode)
        return self._call(_S_write_file, (path, data, mode, progress, ), [w0, w1, w2], timeout)

    def open(self, path: PathArg, mode: str = 'r', *, buffering: int = -1, encoding: str | None = None, perms: int = 0o666, atomic: bool = False, timeout: float | None = None) -> IO[Any]:
        """a file object over an fd opened beneath the root."""
        _open_check(mode, encoding)
        if path.__class__ is str:
            w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
            if '\x00' in path:  # type: ignore[operator]
                raise ValueError('embedded null byte')
        elif path.__class__ is bytes:
            w0 = path
            if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
                raise ValueError('embedded null byte')
        else:
            path = _fspath(path)
            w0 = _fs(path)
        w1 = mode
        w2 = perms if perms.__class__ is int else _int(perms)
        w3 = atomic if atomic.__class__ is bool else bool(atomic)
        return self._call(_S_open, (path, mode, buffering, encoding, perms, atomic, ), [w0, w1, w2, w3], timeout)

    def batch(self, calls: Iterable[Any], *, stop_on_error: bool = False, timeout: float | None = None) -> list[Any]:
        """many calls in one round trip, run in order; each slot a result or the exception (DESIGN.md "Batch")."""
        return self._batch(calls, stop_on_error, timeout)

    def stats(self, *, timeout: float | None = None) -> dict[str, int]:
        """the daemon's counters: calls, errors, escapes refused, connections."""
        return self._call(_S_stats, (), [], timeout)


class AsyncMethods:
    """``AsyncClient``'s methods (awaited)."""

    __slots__ = ()

    if TYPE_CHECKING:
        async def _call(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        def _stream(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        def _watch(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> Any: ...
        async def _batch(self, calls: Iterable[Any], stop_on_error: bool, timeout: float | None) -> list[Any]: ...

    async def stat(self, path: PathArg, *, follow_symlinks: bool = True, timeout: float | None = None) -> os.stat_result:
        """os.stat beneath the root."""
        return await self._call(_S_stat, *_encode_stat(path, follow_symlinks=follow_symlinks), timeout)

    async def lstat(self, path: PathArg, *, timeout: float | None = None) -> os.stat_result:
        """os.lstat beneath the root."""
        return await self._call(_S_lstat, *_encode_lstat(path), timeout)

    async def exists(self, path: PathArg, *, timeout: float | None = None) -> bool:
        """True if path exists; escapes still raise."""
        return await self._call(_S_exists, *_encode_exists(path), timeout)

    async def listdir(self, path: PathArg = '.', *, timeout: float | None = None) -> list[Any]:
        """os.listdir."""
        return await self._call(_S_listdir, *_encode_listdir(path), timeout)

    async def scandir(self, path: PathArg = '.', *, timeout: float | None = None) -> list[DirEntry]:
        """os.scandir, as a list."""
        return await self._call(_S_scandir, *_encode_scandir(path), timeout)

    async def du(self, path: PathArg = '.', *, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> tuple[int, int]:
        """(bytes_on_disk, entries) of a tree, never following links."""
        return await self._call(_S_du, *_encode_du(path, progress=progress), timeout)

    def walk(self, top: PathArg = '.', *, top_down: bool = True, follow_symlinks: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> AsyncIterator[tuple[Any, list[Any], list[Any]]]:
        """pathlib.Path.walk beneath the root, streamed."""
        return self._stream(_S_walk, *_encode_walk(top, top_down=top_down, follow_symlinks=follow_symlinks, progress=progress), timeout)

    def watch(self, path: PathArg = '.', *, recursive: bool = True, max_queue: int = 4096, timeout: float | None = None) -> AsyncWatch:
        """change events beneath path, streamed until closed."""
        return self._watch(_S_watch, *_encode_watch(path, recursive=recursive, max_queue=max_queue), timeout)

    async def readlink(self, path: PathArg, *, timeout: float | None = None) -> Any:
        """os.readlink."""
        return await self._call(_S_readlink, *_encode_readlink(path), timeout)

    async def realpath(self, path: PathArg, *, timeout: float | None = None) -> Any:
        """canonical path relative to the root."""
        return await self._call(_S_realpath, *_encode_realpath(path), timeout)

    async def mkdir(self, path: PathArg, mode: int = 0o777, *, parents: bool = False, exist_ok: bool = False, timeout: float | None = None) -> None:
        """pathlib.Path.mkdir."""
        return await self._call(_S_mkdir, *_encode_mkdir(path, mode, parents=parents, exist_ok=exist_ok), timeout)

    async def unlink(self, path: PathArg, *, missing_ok: bool = False, timeout: float | None = None) -> None:
        """os.unlink."""
        return await self._call(_S_unlink, *_encode_unlink(path, missing_ok=missing_ok), timeout)

    async def rmdir(self, path: PathArg, *, timeout: float | None = None) -> None:
        """os.rmdir."""
        return await self._call(_S_rmdir, *_encode_rmdir(path), timeout)

    async def rename(self, src: PathArg, dst: PathArg, *, noreplace: bool = False, timeout: float | None = None) -> None:
        """renameat2."""
        return await self._call(_S_rename, *_encode_rename(src, dst, noreplace=noreplace), timeout)

    async def exchange(self, a: PathArg, b: PathArg, *, timeout: float | None = None) -> None:
        """renameat2(RENAME_EXCHANGE)."""
        return await self._call(_S_exchange, *_encode_exchange(a, b), timeout)

    async def move(self, src: PathArg, dst: PathArg, *, overwrite: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """rename, or copy then remove across mounts."""
        return await self._call(_S_move, *_encode_move(src, dst, overwrite=overwrite, progress=progress), timeout)

    async def link(self, src: PathArg, dst: PathArg, *, timeout: float | None = None) -> None:
        """hard link, never following src."""
        return await self._call(_S_link, *_encode_link(src, dst), timeout)

    async def symlink(self, target: PathArg, path: PathArg, *, timeout: float | None = None) -> None:
        """os.symlink(target, path)."""
        return await self._call(_S_symlink, *_encode_symlink(target, path), timeout)

    async def chmod(self, path: PathArg, mode: int, *, timeout: float | None = None) -> None:
        """chmod, never through a final symlink."""
        return await self._call(_S_chmod, *_encode_chmod(path, mode), timeout)

    async def chown(self, path: PathArg, uid: int, gid: int, *, timeout: float | None = None) -> None:
        """lchown."""
        return await self._call(_S_chown, *_encode_chown(path, uid, gid), timeout)

    async def utime(self, path: PathArg, *, ns: tuple[int, int] | None = None, timeout: float | None = None) -> None:
        """utime, not following a final symlink."""
        return await self._call(_S_utime, *_encode_utime(path, ns=ns), timeout)

    async def truncate(self, path: PathArg, length: int, *, timeout: float | None = None) -> None:
        """os.truncate."""
        return await self._call(_S_truncate, *_encode_truncate(path, length), timeout)

    async def copy_file(self, src: PathArg, dst: PathArg, *, overwrite: bool = True, reflink: str = 'auto', progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """atomic file copy."""
        return await self._call(_S_copy_file, *_encode_copy_file(src, dst, overwrite=overwrite, reflink=reflink, progress=progress), timeout)

    async def cp(self, src: PathArg, dst: PathArg, *, recursive: bool = False, overwrite: bool = True, preserve: bool = True, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """cp [-r]; links copied as links."""
        return await self._call(_S_cp, *_encode_cp(src, dst, recursive=recursive, overwrite=overwrite, preserve=preserve, progress=progress), timeout)

    async def rm(self, path: PathArg, *, recursive: bool = False, force: bool = False, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """rm [-r] [-f]."""
        return await self._call(_S_rm, *_encode_rm(path, recursive=recursive, force=force, progress=progress), timeout)

    async def mkfifo(self, path: PathArg, mode: int = 0o666, *, timeout: float | None = None) -> None:
        """os.mkfifo."""
        return await self._call(_S_mkfifo, *_encode_mkfifo(path, mode), timeout)

    async def read_file(self, path: PathArg, *, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> bytes:
        """whole file contents."""
        return await self._call(_S_read_file, *_encode_read_file(path, progress=progress), timeout)

    async def write_file(self, path: PathArg, data: bytes | bytearray | memoryview, *, mode: int = 0o666, progress: Callable[[Progress], Any] | None = None, timeout: float | None = None) -> None:
        """atomic replace."""
        return await self._call(_S_write_file, *_encode_write_file(path, data, mode=mode, progress=progress), timeout)

    async def open(self, path: PathArg, mode: str = 'r', *, buffering: int = -1, encoding: str | None = None, perms: int = 0o666, atomic: bool = False, timeout: float | None = None) -> IO[Any]:
        """a file object over an fd opened beneath the root."""
        return await self._call(_S_open, *_encode_open(path, mode, buffering=buffering, encoding=encoding, perms=perms, atomic=atomic), timeout)

    async def batch(self, calls: Iterable[Any], *, stop_on_error: bool = False, timeout: float | None = None) -> list[Any]:
        """many calls in one round trip, run in order; each slot a result or the exception (DESIGN.md "Batch")."""
        return await self._batch(calls, stop_on_error, timeout)

    async def stats(self, *, timeout: float | None = None) -> dict[str, int]:
        """the daemon's counters: calls, errors, escapes refused, connections."""
        return await self._call(_S_stats, *_encode_stats(), timeout)


# -- the argument handling alone, for Client.submit (pipelining) ------------------------------


def _encode_stat(path: PathArg, *, follow_symlinks: bool = True) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = follow_symlinks if follow_symlinks.__class__ is bool else bool(follow_symlinks)
    return (path, follow_symlinks, ), [w0, w1]

def _encode_lstat(path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_exists(path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_listdir(path: PathArg = '.') -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_scandir(path: PathArg = '.') -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_du(path: PathArg = '.', *, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, progress, ), [w0]

def _encode_walk(top: PathArg = '.', *, top_down: bool = True, follow_symlinks: bool = False, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if top.__class__ is str:
        w0 = top.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in top:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif top.__class__ is bytes:
        w0 = top
        if 0 in top:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        top = _fspath(top)
        w0 = _fs(top)
    w1 = top_down if top_down.__class__ is bool else bool(top_down)
    w2 = follow_symlinks if follow_symlinks.__class__ is bool else bool(follow_symlinks)
    return (top, top_down, follow_symlinks, progress, ), [w0, w1, w2]

def _encode_watch(path: PathArg = '.', *, recursive: bool = True, max_queue: int = 4096) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = recursive if recursive.__class__ is bool else bool(recursive)
    w2 = max_queue if max_queue.__class__ is int else _int(max_queue)
    return (path, recursive, max_queue, ), [w0, w1, w2]

def _encode_readlink(path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_realpath(path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_mkdir(path: PathArg, mode: int = 0o777, *, parents: bool = False, exist_ok: bool = False) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = mode if mode.__class__ is int else _int(mode)
    w2 = parents if parents.__class__ is bool else bool(parents)
    w3 = exist_ok if exist_ok.__class__ is bool else bool(exist_ok)
    return (path, mode, parents, exist_ok, ), [w0, w1, w2, w3]

def _encode_unlink(path: PathArg, *, missing_ok: bool = False) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = missing_ok if missing_ok.__class__ is bool else bool(missing_ok)
    return (path, missing_ok, ), [w0, w1]

def _encode_rmdir(path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, ), [w0]

def _encode_rename(src: PathArg, dst: PathArg, *, noreplace: bool = False) -> tuple[tuple[Any, ...], list[Any]]:
    if src.__class__ is str:
        w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in src:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif src.__class__ is bytes:
        w0 = src
        if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        src = _fspath(src)
        w0 = _fs(src)
    if dst.__class__ is str:
        w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in dst:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif dst.__class__ is bytes:
        w1 = dst
        if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        dst = _fspath(dst)
        w1 = _fs(dst)
    w2 = noreplace if noreplace.__class__ is bool else bool(noreplace)
    return (src, dst, noreplace, ), [w0, w1, w2]

def _encode_exchange(a: PathArg, b: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if a.__class__ is str:
        w0 = a.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in a:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif a.__class__ is bytes:
        w0 = a
        if 0 in a:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        a = _fspath(a)
        w0 = _fs(a)
    if b.__class__ is str:
        w1 = b.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in b:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif b.__class__ is bytes:
        w1 = b
        if 0 in b:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        b = _fspath(b)
        w1 = _fs(b)
    return (a, b, ), [w0, w1]

def _encode_move(src: PathArg, dst: PathArg, *, overwrite: bool = False, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if src.__class__ is str:
        w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in src:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif src.__class__ is bytes:
        w0 = src
        if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        src = _fspath(src)
        w0 = _fs(src)
    if dst.__class__ is str:
        w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in dst:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif dst.__class__ is bytes:
        w1 = dst
        if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        dst = _fspath(dst)
        w1 = _fs(dst)
    w2 = overwrite if overwrite.__class__ is bool else bool(overwrite)
    return (src, dst, overwrite, progress, ), [w0, w1, w2]

def _encode_link(src: PathArg, dst: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    if src.__class__ is str:
        w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in src:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif src.__class__ is bytes:
        w0 = src
        if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        src = _fspath(src)
        w0 = _fs(src)
    if dst.__class__ is str:
        w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in dst:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif dst.__class__ is bytes:
        w1 = dst
        if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        dst = _fspath(dst)
        w1 = _fs(dst)
    return (src, dst, ), [w0, w1]

def _encode_symlink(target: PathArg, path: PathArg) -> tuple[tuple[Any, ...], list[Any]]:
    w0 = _fs(target)
    if path.__class__ is str:
        w1 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w1 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w1 = _fs(path)
    return (target, path, ), [w0, w1]

def _encode_chmod(path: PathArg, mode: int) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = mode if mode.__class__ is int else _int(mode)
    return (path, mode, ), [w0, w1]

def _encode_chown(path: PathArg, uid: int, gid: int) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = uid if uid.__class__ is int else _int(uid)
    w2 = gid if gid.__class__ is int else _int(gid)
    return (path, uid, gid, ), [w0, w1, w2]

def _encode_utime(path: PathArg, *, ns: tuple[int, int] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = None if ns is None else _ns('utime', ns)
    return (path, ns, ), [w0, w1]

def _encode_truncate(path: PathArg, length: int) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = length if length.__class__ is int else _int(length)
    return (path, length, ), [w0, w1]

def _encode_copy_file(src: PathArg, dst: PathArg, *, overwrite: bool = True, reflink: str = 'auto', progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if src.__class__ is str:
        w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in src:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif src.__class__ is bytes:
        w0 = src
        if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        src = _fspath(src)
        w0 = _fs(src)
    if dst.__class__ is str:
        w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in dst:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif dst.__class__ is bytes:
        w1 = dst
        if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        dst = _fspath(dst)
        w1 = _fs(dst)
    w2 = overwrite if overwrite.__class__ is bool else bool(overwrite)
    w3 = reflink
    return (src, dst, overwrite, reflink, progress, ), [w0, w1, w2, w3]

def _encode_cp(src: PathArg, dst: PathArg, *, recursive: bool = False, overwrite: bool = True, preserve: bool = True, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if src.__class__ is str:
        w0 = src.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in src:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif src.__class__ is bytes:
        w0 = src
        if 0 in src:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        src = _fspath(src)
        w0 = _fs(src)
    if dst.__class__ is str:
        w1 = dst.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in dst:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif dst.__class__ is bytes:
        w1 = dst
        if 0 in dst:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        dst = _fspath(dst)
        w1 = _fs(dst)
    w2 = recursive if recursive.__class__ is bool else bool(recursive)
    w3 = overwrite if overwrite.__class__ is bool else bool(overwrite)
    w4 = preserve if preserve.__class__ is bool else bool(preserve)
    return (src, dst, recursive, overwrite, preserve, progress, ), [w0, w1, w2, w3, w4]

def _encode_rm(path: PathArg, *, recursive: bool = False, force: bool = False, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = recursive if recursive.__class__ is bool else bool(recursive)
    w2 = force if force.__class__ is bool else bool(force)
    return (path, recursive, force, progress, ), [w0, w1, w2]

def _encode_mkfifo(path: PathArg, mode: int = 0o666) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = mode if mode.__class__ is int else _int(mode)
    return (path, mode, ), [w0, w1]

def _encode_read_file(path: PathArg, *, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    return (path, progress, ), [w0]

def _encode_write_file(path: PathArg, data: bytes | bytearray | memoryview, *, mode: int = 0o666, progress: Callable[[Progress], Any] | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = data if data.__class__ is bytes else _data('write_file', 'data', data)
    w2 = mode if mode.__class__ is int else _int(mode)
    return (path, data, mode, progress, ), [w0, w1, w2]

def _encode_open(path: PathArg, mode: str = 'r', *, buffering: int = -1, encoding: str | None = None, perms: int = 0o666, atomic: bool = False) -> tuple[tuple[Any, ...], list[Any]]:
    _open_check(mode, encoding)
    if path.__class__ is str:
        w0 = path.encode(_FSENC, _FSERR)  # type: ignore[union-attr]
        if '\x00' in path:  # type: ignore[operator]
            raise ValueError('embedded null byte')
    elif path.__class__ is bytes:
        w0 = path
        if 0 in path:  # type: ignore[operator]  # (an int: b'\x00' would make and drop a TypeError)
            raise ValueError('embedded null byte')
    else:
        path = _fspath(path)
        w0 = _fs(path)
    w1 = mode
    w2 = perms if perms.__class__ is int else _int(perms)
    w3 = atomic if atomic.__class__ is bool else bool(atomic)
    return (path, mode, buffering, encoding, perms, atomic, ), [w0, w1, w2, w3]

def _encode_stats() -> tuple[tuple[Any, ...], list[Any]]:
    return (), []


#: name -> encode(*args, **kwargs) -> (the caller's values, the wire params)
ENCODERS: dict[str, Callable[..., tuple[tuple[Any, ...], list[Any]]]] = {
    'stat': _encode_stat,
    'lstat': _encode_lstat,
    'exists': _encode_exists,
    'listdir': _encode_listdir,
    'scandir': _encode_scandir,
    'du': _encode_du,
    'walk': _encode_walk,
    'watch': _encode_watch,
    'readlink': _encode_readlink,
    'realpath': _encode_realpath,
    'mkdir': _encode_mkdir,
    'unlink': _encode_unlink,
    'rmdir': _encode_rmdir,
    'rename': _encode_rename,
    'exchange': _encode_exchange,
    'move': _encode_move,
    'link': _encode_link,
    'symlink': _encode_symlink,
    'chmod': _encode_chmod,
    'chown': _encode_chown,
    'utime': _encode_utime,
    'truncate': _encode_truncate,
    'copy_file': _encode_copy_file,
    'cp': _encode_cp,
    'rm': _encode_rm,
    'mkfifo': _encode_mkfifo,
    'read_file': _encode_read_file,
    'write_file': _encode_write_file,
    'open': _encode_open,
    'stats': _encode_stats,
}
