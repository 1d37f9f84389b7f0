"""``Root``: every operation of the API, in-process, strictly beneath one directory fd.

All resolution of a caller's path happens in the native helpers (``beneathd._native``,
``native/resolve.c``): ``openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`` for the parent
(or the whole path), then one ``*at`` call on the final component; final links, realpath
and ``mkdir -p`` are resolved there too.  The only lookup done here in Python is
``fstatat`` of a single component relative to the root fd without following it (the
``stat`` fast path), which cannot leave the root and is not taken under ``no_xdev`` (it
would cross a mount at that name).  ``scandir``'s per-entry data is ``fstatat`` relative
to the listed directory, as ``os.scandir``'s is.

``Root`` is thread-safe: it holds no state but the fd.  ``close()`` must not race with
calls still in flight (as with any file object).
"""

from __future__ import annotations

import array
import errno
import io
import os
import resource
import stat as _stat
import sys
import threading
from typing import IO, Any, AnyStr, Callable, Iterator

from beneathd._native import ffi, lib

from ..protocol.batch import run_batch
from ..protocol.errors import EscapeError, make_error
from ..protocol.modes import open_flags
from ..protocol.types import (
    _PROGRESS_INTERVAL,
    PACKED_STAT,
    _stat_of,
    AtomicFile,
    DirEntry,
    Progress,
    entries_from_packed,
    read_counted,
    split_names,
    walk_counted,
)
from .journal import Journal
from .release import release as _release
from .watch import Watch, WatchBudget

__all__ = ["Root", "OpenAt2Unavailable", "Job", "Progress"]

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_REFLINK = {"never": lib.BN_REFLINK_NEVER, "auto": lib.BN_REFLINK_AUTO, "always": lib.BN_REFLINK_ALWAYS}
_ENOTREG_MESSAGE = "not a regular file"
_EMOUNT_MESSAGE = "crosses a mount point (the root is served with no_xdev)"
#: the one retry policy's give-up (native/internal.h, bn_retry_again): the caller may try again
_RETRY_MESSAGE = (f"the tree kept changing under the call (renamed or refilled {lib.BN_RETRY_TRIES} times or for "
                  f"{lib.BN_RETRY_MS} ms): gave up; it may be retried")
_ECHANGED_MESSAGE = "a directory in the tree was moved or replaced during the walk; stopped there"
_PATH_MAX = 4096
_O_PATH = os.O_PATH
_O_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW
_os_stat = os.stat
_os_close = os.close
_S_ISLNK = _stat.S_ISLNK
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_unpack = ffi.unpack
#: open() mode string -> flags, filled lazily (only valid modes get in; bounded)
_OPEN_FLAGS: dict[str, int] = {}


class OpenAt2Unavailable(OSError):
    """openat2(2) is missing (ENOSYS) or blocked (EPERM, seccomp): beneathd fails closed."""


#: the resolvers a Root can use (DESIGN.md, "Resolvers"); the first is the default
RESOLVERS = ("openat2", "emulated")


#: how often a ``progress`` callback is called at most while a call runs (DESIGN.md)
PROGRESS_INTERVAL = _PROGRESS_INTERVAL
_CANCELLED_MESSAGE = "cancelled"


class Job:
    """One long call (``cp``, ``rm``, ``copy_file``, ``move``), seen from another thread:
    :meth:`cancel` stops it within one entry or one chunk of file data (the call raises
    ``OSError(ECANCELED)``), :attr:`progress` says what it has done so far.

    The counters live in native memory the walking thread updates (``bn_job``): reading
    them needs no lock and no callback into Python from C.
    """

    __slots__ = ("_c",)

    def __init__(self) -> None:
        self._c: Any = ffi.new("bn_job *")

    def cancel(self) -> None:
        self._c.cancel = 1

    @property
    def cancelled(self) -> bool:
        return bool(self._c.cancel)

    @property
    def progress(self) -> Progress:
        c = self._c
        return Progress(c.entries, c.bytes)


def _job_ptr(job: Job | None) -> Any:
    return ffi.NULL if job is None else job._c


def _with_progress(run: Callable[[Job | None], None], job: Job | None,
                   progress: Callable[[Progress], Any] | None) -> None:
    """Run ``run(job)`` (``job`` may be None: no counting, nothing to cancel it); with a
    ``progress`` callback, with a Job, in a helper thread while this one calls it at most
    every 100 ms and once at the end with the totals.  An exception from the callback (or
    a KeyboardInterrupt here) cancels the call and is raised."""
    if progress is None:
        run(job)
        return
    if job is None:
        job = Job()
    if not callable(progress):
        raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")
    out: list[BaseException] = []

    def work() -> None:
        try:
            run(job)
        except BaseException as e:  # handed to the caller's thread
            out.append(e)

    t = threading.Thread(target=work, name="beneathd-job", daemon=True)
    t.start()
    last = None
    try:
        while True:
            t.join(PROGRESS_INTERVAL)
            if not t.is_alive():
                break
            p = job.progress
            if p != last:
                last = p
                progress(p)
    except BaseException:
        job.cancel()
        t.join()
        raise
    progress(job.progress)
    if out:
        raise out[0]


def _enc(path: Any) -> bytes:
    """The bytes of a caller's path (str, bytes or os.PathLike), refusing NUL like ``os``."""
    cls = path.__class__
    if cls is str:
        if "\0" in path:
            raise ValueError("embedded null byte")
        return path.encode(_FS_ENCODING, _FS_ERRORS)  # type: ignore[no-any-return]
    if cls is bytes:
        # (0 in: a NUL byte; b"\0" in would format and drop a TypeError first, ~0.4 us)
        if 0 in path:
            raise ValueError("embedded null byte")
        return path  # type: ignore[no-any-return]
    p = os.fspath(path)
    b = os.fsencode(p) if isinstance(p, str) else p
    if not isinstance(b, bytes):
        raise TypeError(f"path should be str or bytes, not {type(path).__name__}")
    if 0 in b:
        raise ValueError("embedded null byte")
    return b


def _echo(value: bytes, like: Any) -> Any:
    """``value`` in the type the caller used (str stays str, bytes stay bytes)."""
    return value if isinstance(os.fspath(like), bytes) else os.fsdecode(value)


def fd_limit() -> int:
    """This process's RLIMIT_NOFILE (soft): what ``EMFILE`` messages name, since a caller
    over a socket cannot see the daemon's."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _emfile(path: Any = None, path2: Any = None) -> OSError:
    return make_error(errno.EMFILE, path, path2,
                      f"Too many open files (RLIMIT_NOFILE {fd_limit()} of the process holding the root)")


def name_fd_limit(e: BaseException, path: Any = None) -> BaseException:
    """A bare ``EMFILE`` (``os.dup`` and the like, outside the native calls) as the native
    ones raise it: the limit named, and ``path`` if it names none."""
    if isinstance(e, OSError) and e.errno == errno.EMFILE and e.strerror == os.strerror(errno.EMFILE):
        return _emfile(path if e.filename is None else e.filename, e.filename2)
    return e


def _error(code: int, path: Any, path2: Any = None) -> OSError:
    """The exception for a native ``-code``, naming the caller's own path(s)."""
    if code == lib.BN_EESCAPE:
        return EscapeError(path, path2)
    if code == lib.BN_EMOUNT:
        return EscapeError(path, path2, _EMOUNT_MESSAGE)
    if code == lib.BN_ENOTREG:
        return PermissionError(errno.EPERM, _ENOTREG_MESSAGE, path)
    if code == lib.BN_ECHANGED:
        return OSError(errno.EAGAIN, _ECHANGED_MESSAGE, path)
    if code == errno.EAGAIN:
        return OSError(errno.EAGAIN, _RETRY_MESSAGE, path, None, path2)
    if code == errno.EMFILE:
        return _emfile(path, path2)
    return make_error(code, path, path2)


def _check(r: int, path: Any, path2: Any = None) -> int:
    if r < 0:
        raise _error(-r, path, path2)
    return r


def _stat_out(out: Any) -> os.stat_result:
    """An ``os.stat_result`` from the native ``int64_t[13]`` (the wire order of protocol.types)."""
    return _stat_of(_unpack(out, 13))


def _take(ptr: Any, n: int) -> bytes:
    """``n`` bytes a native call returned (copied out: the caller frees them)."""
    return ffi.buffer(ptr, n)[:] if n else b""


def _take_records(ptr: Any, n: int) -> bytes:
    """``n`` bytes of 13-int64 records, little-endian as on the wire."""
    b = _take(ptr, n)
    if sys.byteorder == "big":
        a = array.array("q", b)
        a.byteswap()
        b = a.tobytes()
    return b


def _check_procfs(fd: int) -> None:
    """The emulated resolver checks every ``..`` and every result through
    ``/proc/self/fd``: without a working procfs it cannot be safe, so it refuses."""
    r = lib.bn_emulated_ready(fd)
    if r < 0:
        raise OSError(errno.ENOSYS, "the emulated resolver needs procfs mounted at /proc (it checks "
                      f"every '..' and every result through /proc/self/fd): {os.strerror(-r)}")


class Root:
    """A directory opened once; every method acts strictly beneath it."""

    def __init__(self, path: str | bytes | os.PathLike[Any], *, no_xdev: bool = False,
                 journal: str | bytes | os.PathLike[Any] | None = None, resolver: str = "openat2") -> None:
        """Open ``path`` (``O_PATH``); fail closed if openat2 is unusable.  ``journal``: a
        private directory outside the root for the crash journal (see
        :meth:`attach_journal`); without one, a process killed while replacing a file may
        leave its temporary name behind.  ``resolver="emulated"`` resolves without openat2
        (one ``O_PATH|O_NOFOLLOW`` step per component, checked through ``/proc/self/fd``:
        native/resolve.c), for kernels and sandboxes that lack it; never chosen silently."""
        if resolver not in RESOLVERS:
            raise ValueError(f"resolver must be one of {', '.join(map(repr, RESOLVERS))}, not {resolver!r}")
        self._fd = -1
        self._journal: Journal | None = None
        #: what every native call is given: the fd, the resolve flags, the journal's handle
        self._r: Any = ffi.new("bn_root *", {"fd": -1, "rx": 0, "journal": ffi.NULL, "max_depth": 0})
        #: what :meth:`attach_journal` found and undid
        self.recovered: list[tuple[bytes, str]] = []
        self._no_xdev = no_xdev
        self._resolver = resolver
        self._rx = (lib.BN_RESOLVE_NO_XDEV if no_xdev else 0) | (lib.BN_RESOLVE_EMULATED if resolver == "emulated" else 0)
        self._name = os.fsdecode(os.fspath(path))
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if resolver == "emulated":
                _check_procfs(fd)
            probe = lib.bn_openat2(fd, b".", _O_PATH, 0, self._rx)
        except BaseException:
            os.close(fd)
            raise
        if probe < 0:
            os.close(fd)
            if -probe == errno.ENOSYS:
                raise OpenAt2Unavailable(
                    errno.ENOSYS,
                    "openat2(2) is not available (ENOSYS): beneathd needs Linux >= 5.6 and "
                    "refuses to fall back to path-based resolution (an operator may choose "
                    "resolver='emulated')",
                )
            if -probe == errno.EPERM:
                raise OpenAt2Unavailable(
                    errno.EPERM,
                    "openat2(2) is blocked (EPERM), most likely by a seccomp filter: beneathd "
                    "refuses to fall back to path-based resolution (an operator may choose "
                    "resolver='emulated')",
                )
            raise make_error(-probe, self._name)
        os.close(probe)
        self._fd = fd
        self._r.fd, self._r.rx = fd, self._rx
        if journal is not None:
            try:
                self.attach_journal(journal)
            except BaseException:
                self.close()
                raise

    def attach_journal(self, path: str | bytes | os.PathLike[Any]) -> list[tuple[bytes, str]]:
        """Take (lock) the crash journal in ``path``, undo what a killed predecessor left
        there (temporary names of replaces cut short), and journal from now on.
        Returns ``(path beneath the root, outcome)`` per leftover; raises ``JournalBusy``
        if another process holds it.  Call before serving, not concurrently with calls."""
        j = Journal(path)
        try:
            recovered = j.replay(self)
        except BaseException:
            j.close()
            raise
        old, self._journal = self._journal, j
        self._r.journal = j.handle
        if old is not None:
            old.close()
        self.recovered = recovered
        return recovered

    @property
    def walk_limit(self) -> int:
        """The deepest level ``cp``/``rm``/``move`` descend; a deeper tree gives
        ``OSError(ENAMETOOLONG)`` naming it. Default and maximum ``BN_TREE_MAX_DEPTH``
        (1,048,576); the daemon lowers it under Landlock (``--walk-limit``)."""
        return int(self._r.max_depth) or int(lib.BN_TREE_MAX_DEPTH)

    @walk_limit.setter
    def walk_limit(self, levels: int) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= lib.BN_TREE_MAX_DEPTH:
            raise ValueError(f"walk_limit must be an int from 1 to {lib.BN_TREE_MAX_DEPTH}")
        self._r.max_depth = levels

    def _walked(self, r: int, path: Any, path2: Any = None) -> None:
        """_check for a tree walk: too deep names the walk limit."""
        if r == -lib.BN_ETOODEEP:
            raise OSError(errno.ENAMETOOLONG, f"tree deeper than {self.walk_limit} levels (the walk limit)", path)
        if r == -errno.ECANCELED:
            raise OSError(errno.ECANCELED, _CANCELLED_MESSAGE, path, None, path2)
        _check(r, path, path2)

    @property
    def resolver(self) -> str:
        """Which resolver this root uses: ``"openat2"`` (the default) or ``"emulated"``."""
        return self._resolver

    @property
    def journal(self) -> Journal | None:
        """The attached crash journal, if any."""
        return self._journal

    # -- lifetime -------------------------------------------------------------------------

    def fileno(self) -> int:
        """The O_PATH directory fd everything is resolved beneath."""
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        self._r.fd, self._r.journal = -1, ffi.NULL
        if fd >= 0:
            os.close(fd)
        j, self._journal = self._journal, None
        if j is not None:
            j.close()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Root {self._name!r} fd={self._fd}>"

    # -- internals --------------------------------------------------------------------------

    def _open(self, path: Any, flags: int, perms: int = 0) -> int:
        """An fd for a regular file beneath the root (never blocks on FIFOs or devices)."""
        return _check(lib.bn_open_regular(self._r, _enc(path), flags, perms), path)

    def _opendir(self, path: Any) -> int:
        b = _enc(path)
        if b.startswith(b"/"):
            raise EscapeError(path)
        if not b:
            raise make_error(errno.ENOENT, path)
        return _check(lib.bn_openat2(self._fd, b, os.O_RDONLY | os.O_DIRECTORY, 0, self._rx), path)

    # -- reads ------------------------------------------------------------------------------

    def stat(self, path: AnyStr | os.PathLike[AnyStr], *, follow_symlinks: bool = True) -> os.stat_result:
        """``os.stat`` beneath the root; ``follow_symlinks=False`` is ``lstat``."""
        # Fast path: one component is fstatat() on the root fd without following, which
        # cannot leave the root; only a symlink there needs openat2 to be followed. Not with
        # no_xdev: fstatat crosses a mount at the name, openat2 refuses it (every spelling
        # of a path must get the same answer).
        p: Any = path
        cls = p.__class__
        if not self._no_xdev and ((cls is str and "/" not in p and p != ".." and p) or (
            cls is bytes and 0x2F not in p and p != b".." and p  # (0x2F: b"/", by memchr; see _enc)
        )):
            try:
                st = _os_stat(path, dir_fd=self._fd, follow_symlinks=False)
            except OSError as e:
                raise make_error(e.errno or errno.EIO, path) from None
            if not follow_symlinks or not _S_ISLNK(st.st_mode):
                return st
        b = _enc(path)
        if follow_symlinks:
            # openat2 (beneath, following in-tree links) pins the target; fstat it
            return self._fstat_at(b, _O_PATH, path)
        if not self._no_xdev and b[-1:] != b"/" and b.rpartition(b"/")[2] not in (b".", b".."):
            # a plain final name: openat2 of the whole path, the name itself not followed,
            # and fstat, as stat does (one lookup; bn_lstat does the same in C, but its
            # 13 ints would then be made into a stat_result here, in Python)
            return self._fstat_at(b, _O_PATH_NOFOLLOW, path)
        out = ffi.new("int64_t[13]")
        _check(lib.bn_lstat(self._r, b, out), path)
        return _stat_out(out)

    def _fstat_at(self, b: bytes, flags: int, path: Any) -> os.stat_result:
        fd = lib.bn_openat2(self._fd, b, flags, 0, self._rx)
        if fd < 0:
            raise _error(-fd, path)
        try:
            return _os_stat(fd)
        finally:
            _os_close(fd)

    def lstat(self, path: AnyStr | os.PathLike[AnyStr]) -> os.stat_result:
        """``os.lstat`` beneath the root."""
        return self.stat(path, follow_symlinks=False)

    def exists(self, path: AnyStr | os.PathLike[AnyStr]) -> bool:
        """Like ``os.path.exists`` (follows in-tree links), but an escape raises."""
        try:
            self.stat(path)
        except EscapeError:
            raise
        except (OSError, ValueError):
            return False
        return True

    def listdir(self, path: AnyStr | os.PathLike[AnyStr] = ".") -> list[AnyStr]:  # type: ignore[assignment]
        """``os.listdir`` beneath the root (names in the caller's type)."""
        fd = self._opendir(path)
        try:
            names = os.listdir(fd)
        finally:
            os.close(fd)
        if isinstance(os.fspath(path), bytes):
            return [os.fsencode(n) for n in names]  # type: ignore[misc]
        return names  # type: ignore[return-value]

    def scandir(self, path: AnyStr | os.PathLike[AnyStr] = ".") -> list[DirEntry]:  # type: ignore[assignment]
        """``os.scandir`` beneath the root, as a list of ``DirEntry`` (with lstat data)."""
        return entries_from_packed(*self._scandir_packed(path), prefix=os.fspath(path))

    def _scandir_packed(self, path: Any = ".") -> tuple[bytes, bytes, bytes, bytes]:
        """The listing of ``scandir`` in its packed form (``protocol.types.entries_from_packed``):
        what the daemon sends as it is, made by one native call (``bn_scan_dir``: getdents,
        an fstatat per name, a readlinkat and a stat beneath the root per symlink) with no
        Python object per entry. A symlink's target is resolved as the caller's path + its
        name, beneath the root (dangling or out: no target)."""
        p = os.fspath(path)
        b = _enc(p)
        fd = self._opendir(path)
        out = ffi.new("bn_scan *")
        try:
            n = lib.bn_scan_dir(self._r, fd, b if not b or b.endswith(b"/") else b + b"/", out)
            if n < 0:
                raise _error(-n, path)
            return (_take(out.names, out.names_len), _take_records(out.stats, out.count * PACKED_STAT),
                    _take(out.links, out.links_len), _take_records(out.targets, out.nlinks * PACKED_STAT))
        finally:
            lib.bn_scan_free(out)
            os.close(fd)

    def du(self, path: AnyStr | os.PathLike[AnyStr] = ".", *,  # type: ignore[assignment]
           progress: Callable[[Progress], Any] | None = None, job: Job | None = None) -> tuple[int, int]:
        """``(bytes_on_disk, entries)`` of the tree at ``path`` (the top included), never
        following a link; each name counts (a file with several hard links once per name)."""
        p = _enc(path)
        out = ffi.new("uint64_t[2]")
        _with_progress(lambda j: self._walked(lib.bn_du(self._r, p, out, _job_ptr(j)), path), job, progress)
        return int(out[0]), int(out[1])

    def walk(self, top: AnyStr | os.PathLike[AnyStr] = ".", *, top_down: bool = True,  # type: ignore[assignment]
             follow_symlinks: bool = False, progress: Callable[[Progress], Any] | None = None,
             job: Job | None = None) -> Iterator[tuple[AnyStr, list[AnyStr], list[AnyStr]]]:
        """``pathlib.Path.walk`` beneath the root: ``(dirpath, dirnames, filenames)`` with
        paths relative to the root in ``top``'s type; top-down, pruning ``dirnames`` in
        place skips those directories. Symlinks go in ``filenames``, unless
        ``follow_symlinks``: then a link to a directory in the tree is walked as one (links
        out, dangling links and links back to a directory being walked stay in
        ``filenames``: the walk never loops). Descends by directory fd, never through a
        link it did not choose to follow; at most 64 directory fds held at any depth.
        Directories that vanish or cannot be read are skipped (as ``os.walk`` does);
        ``top`` itself raises."""
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")
        return walk_counted(_Walk(self, top, top_down, bool(follow_symlinks)).run(), progress)

    def watch(self, path: AnyStr | os.PathLike[AnyStr] = ".", *, recursive: bool = True,  # type: ignore[assignment]
              max_queue: int = 4096, budget: WatchBudget | None = None, job: Job | None = None) -> Watch:
        """Change events beneath ``path`` (DESIGN.md "Watch"; ``daemon/watch.py``): an
        iterator of ``WatchEvent`` with ``fileno()``, ``next(timeout)`` and ``close()``. A
        file's path watches that name in its directory (an editor's save by rename is seen).
        ``budget`` (the daemon's caps) and ``job`` (cancels the setup) are the server's."""
        return Watch(self, path, recursive, max_queue, budget, job)

    def batch(self, calls: Any, *, stop_on_error: bool = False) -> list[Any]:
        """Run ``calls`` (``(method_name, *args[, kwargs])`` tuples) in order: a list of
        each call's result, or the exception it raised (returned, not raised); with
        ``stop_on_error`` the calls after the first failure are not run (``None``).
        ``open``, ``watch``, ``walk`` and ``batch`` cannot be batched (``ValueError``)."""
        return run_batch(self, calls, stop_on_error)

    def readlink(self, path: AnyStr | os.PathLike[AnyStr]) -> AnyStr:
        """``os.readlink`` beneath the root."""
        buf = ffi.new("char[]", 4097)
        n = _check(lib.bn_readlink(self._r, _enc(path), buf, 4097), path)
        return _echo(ffi.buffer(buf, n)[:], path)  # type: ignore[no-any-return]

    def realpath(self, path: AnyStr | os.PathLike[AnyStr]) -> AnyStr:
        """The canonical path relative to the root ("." for the root itself), links resolved;
        missing parts are kept as written (``os.path.realpath(strict=False)``)."""
        buf = ffi.new("char[]", _PATH_MAX)
        n = _check(lib.bn_realpath(self._r, _enc(path), buf, _PATH_MAX), path)
        return _echo(ffi.buffer(buf, n)[:], path)  # type: ignore[no-any-return]

    def read_file(self, path: AnyStr | os.PathLike[AnyStr], *, progress: Callable[[Progress], Any] | None = None,
                  job: Job | None = None) -> bytes:
        """The whole contents of a regular file (with ``progress`` or a ``job``: read in
        8 MiB chunks, counted, stoppable between them)."""
        fd = self._open(path, os.O_RDONLY)
        with open(fd, "rb", buffering=0, closefd=True) as f:
            if progress is None and job is None:
                return f.readall()
            return read_counted(f, progress, job)  # (protocol/types.py)

    def open(
        self,
        path: AnyStr | os.PathLike[AnyStr],
        mode: str = "r",
        *,
        buffering: int = -1,
        encoding: str | None = None,
        perms: int = 0o666,
        atomic: bool = False,
    ) -> IO[Any]:
        """A file object over a regular file opened beneath the root (``io.open`` modes).

        With ``atomic`` and a ``w`` or ``x`` mode: an :class:`AtomicFile` writing to an
        anonymous file in the target's real directory (a final in-tree link is followed),
        published whole at ``path`` by ``close()``; an existing file's permission bits are
        kept, a new one gets ``perms`` less the umask."""
        if atomic:
            return self._open_atomic(path, mode, buffering, encoding, perms)
        flags = _OPEN_FLAGS.get(mode) if mode.__class__ is str else None
        if flags is None:
            flags = open_flags(mode)
            if len(_OPEN_FLAGS) < 256:
                _OPEN_FLAGS[mode] = flags
        if "b" in mode and encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        fd = self._open(path, flags, perms)
        try:
            return io.open(fd, mode, buffering=buffering, encoding=encoding, closefd=True)
        except BaseException:
            os.close(fd)
            raise

    def _open_atomic(self, path: Any, mode: str, buffering: int, encoding: str | None, perms: int) -> Any:
        open_flags(mode)  # the usual errors for a bad mode
        kind = mode.replace("b", "").replace("t", "").replace("+", "")
        if kind not in ("w", "x"):
            raise ValueError(f"atomic=True needs a w or x mode, not {mode!r}")
        if "b" in mode and encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        w = ffi.new("bn_writer *")
        flags = (lib.BN_AW_OVERWRITE | lib.BN_AW_HOLD_OLD if kind == "w" else 0) | lib.BN_AW_KEEP_MODE
        fd = _check(lib.bn_writer_open(self._r, _enc(path), perms, flags, "+" in mode, w), path)
        try:
            f = io.open(os.dup(fd), mode.replace("x", "w"), buffering=buffering, encoding=encoding, closefd=True)
        except BaseException as e:
            lib.bn_writer_discard(w)
            named = name_fd_limit(e, path)
            if named is not e:
                raise named from None
            raise

        def publish() -> None:
            _check(lib.bn_writer_publish(w), path)
            _release(w.old_fd)  # a replaced big file is freed after this returns (release.py)

        def discard() -> None:
            lib.bn_writer_discard(w)

        return AtomicFile(f, publish, discard, path)

    # -- namespace changes ------------------------------------------------------------------

    def mkdir(
        self,
        path: AnyStr | os.PathLike[AnyStr],
        mode: int = 0o777,
        *,
        parents: bool = False,
        exist_ok: bool = False,
    ) -> None:
        """``pathlib.Path.mkdir`` beneath the root.  With ``parents``, whether an existing
        name is a directory is decided natively when ``mkdir`` finds it (``bn_mkdir_p``
        returns 1), so a name removed meanwhile is made again, never reported as existing."""
        if parents:
            r = lib.bn_mkdir_p(self._r, _enc(path), mode)
            if r == 1:
                if exist_ok:
                    return
                r = -errno.EEXIST
        else:
            r = lib.bn_mkdir(self._r, _enc(path), mode)
        try:
            _check(r, path)
        except OSError as e:
            if isinstance(e, EscapeError) or not exist_ok or not self._is_dir(path):
                raise

    def _is_dir(self, path: Any) -> bool:
        try:
            return _stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def unlink(self, path: AnyStr | os.PathLike[AnyStr], *, missing_ok: bool = False) -> None:
        """``os.unlink`` (``pathlib``'s ``missing_ok``); removes a link, never its target."""
        r = lib.bn_unlink(self._r, _enc(path))
        if r == -errno.ENOENT and missing_ok:
            return
        _check(r, path)

    def rmdir(self, path: AnyStr | os.PathLike[AnyStr]) -> None:
        """``os.rmdir``."""
        _check(lib.bn_rmdir(self._r, _enc(path)), path)

    def rename(self, src: AnyStr | os.PathLike[AnyStr], dst: AnyStr | os.PathLike[AnyStr], *,
               noreplace: bool = False) -> None:
        """``renameat2``; with ``noreplace`` an existing ``dst`` raises ``FileExistsError``."""
        flags = _RENAME_NOREPLACE if noreplace else 0
        _check(lib.bn_rename(self._r, _enc(src), _enc(dst), flags), src, dst)

    def exchange(self, a: AnyStr | os.PathLike[AnyStr], b: AnyStr | os.PathLike[AnyStr]) -> None:
        """Atomically swap two names (``RENAME_EXCHANGE``)."""
        _check(lib.bn_rename(self._r, _enc(a), _enc(b), _RENAME_EXCHANGE), a, b)

    def move(self, src: AnyStr | os.PathLike[AnyStr], dst: AnyStr | os.PathLike[AnyStr], *,
             overwrite: bool = False, progress: Callable[[Progress], Any] | None = None,
             job: Job | None = None) -> None:
        """Rename; across mounts inside the root, copy (preserving) then remove.  Cancelled
        during the copy, the source stays and the copy so far stays (as ``cp -r``); during
        the removal, what is not removed yet stays."""
        _with_progress(lambda j: self._move(src, dst, overwrite, j), job, progress)

    def _move(self, src: Any, dst: Any, overwrite: bool, job: Job | None) -> None:
        flags = 0 if overwrite else _RENAME_NOREPLACE
        r = lib.bn_rename(self._r, _enc(src), _enc(dst), flags)
        if r != -errno.EXDEV:  # EXDEV from renameat2 is a mount boundary; escapes are BN_EESCAPE
            _check(r, src, dst)
            return
        st = self.lstat(src)
        if not overwrite and self._lexists(dst):
            raise make_error(errno.EEXIST, src, dst)
        if _S_ISLNK(st.st_mode):
            target: bytes = self.readlink(_enc(src))
            if overwrite:
                self.rm(dst, force=True)
            self.symlink(target, dst)
        else:
            self.cp(src, dst, recursive=True, overwrite=overwrite, preserve=True, job=job)
        self.rm(src, recursive=True, job=job)

    def _lexists(self, path: Any) -> bool:
        try:
            self.lstat(path)
        except FileNotFoundError:
            return False
        return True

    def link(self, src: AnyStr | os.PathLike[AnyStr], dst: AnyStr | os.PathLike[AnyStr]) -> None:
        """Hard link ``dst`` to ``src`` (never following ``src``; both beneath the root)."""
        _check(lib.bn_link(self._r, _enc(src), _enc(dst)), src, dst)

    def symlink(self, target: str | bytes | os.PathLike[Any], path: AnyStr | os.PathLike[AnyStr]) -> None:
        """``os.symlink(target, path)``; any target text (it is resolved only when used)."""
        t = os.fspath(target)
        tb = os.fsencode(t) if isinstance(t, str) else t
        if not isinstance(tb, bytes) or b"\0" in tb:
            raise ValueError("symlink target must be str or bytes without NUL")
        _check(lib.bn_symlink(self._r, tb, _enc(path)), target, path)

    def mkfifo(self, path: AnyStr | os.PathLike[AnyStr], mode: int = 0o666) -> None:
        """``os.mkfifo``; any file-type bits other than FIFO (device nodes) are refused."""
        kind = _stat.S_IFMT(mode)
        if kind not in (0, _stat.S_IFIFO):
            raise PermissionError(errno.EPERM, "only FIFOs can be created; device nodes are refused", path)
        _check(lib.bn_mkfifo(self._r, _enc(path), _stat.S_IMODE(mode)), path)

    # -- metadata ---------------------------------------------------------------------------

    def chmod(self, path: AnyStr | os.PathLike[AnyStr], mode: int) -> None:
        """chmod of the final component itself; a symlink raises ``OSError`` (target untouched)."""
        _check(lib.bn_chmod(self._r, _enc(path), mode), path)

    def chown(self, path: AnyStr | os.PathLike[AnyStr], uid: int, gid: int) -> None:
        """``os.lchown`` (-1 keeps a value)."""
        _check(lib.bn_chown(self._r, _enc(path), uid, gid), path)

    def utime(self, path: AnyStr | os.PathLike[AnyStr], *, ns: tuple[int, int] | None = None) -> None:
        """Set (atime_ns, mtime_ns), or now; never through a final symlink."""
        if ns is None:
            _check(lib.bn_utime(self._r, _enc(path), 0, 0, 1), path)
            return
        if not isinstance(ns, (tuple, list)) or len(ns) != 2 or not all(isinstance(x, int) for x in ns):
            raise TypeError("utime: 'ns' must be a tuple of two ints")
        _check(lib.bn_utime(self._r, _enc(path), ns[0], ns[1], 0), path)

    def truncate(self, path: AnyStr | os.PathLike[AnyStr], length: int) -> None:
        """``os.truncate`` of a regular file (follows an in-tree link)."""
        _check(lib.bn_truncate(self._r, _enc(path), length), path)

    # -- data -------------------------------------------------------------------------------

    def write_file(self, path: AnyStr | os.PathLike[AnyStr], data: bytes, *, mode: int = 0o666,
                   progress: Callable[[Progress], Any] | None = None, job: Job | None = None) -> None:
        """Atomically replace ``path`` with ``data`` (temporary file, then link or rename in
        the target's real directory: a final in-tree symlink is followed, not replaced).
        A new file gets ``mode`` less the umask; an existing one keeps its mode."""
        if isinstance(data, str):
            raise TypeError("write_file() data must be bytes-like, not str")
        buf = ffi.from_buffer(data)
        flags = lib.BN_AW_OVERWRITE | lib.BN_AW_KEEP_MODE | lib.BN_AW_HOLD_OLD
        p = _enc(path)
        held = ffi.new("int *", -1)
        try:
            _with_progress(lambda j: self._walked(lib.bn_write_file(self._r, p, buf, len(buf), mode, flags,
                                                                    _job_ptr(j), held), path), job, progress)
        finally:
            _release(held[0])  # a replaced big file is freed after this returns (release.py)

    def copy_file(self, src: AnyStr | os.PathLike[AnyStr], dst: AnyStr | os.PathLike[AnyStr], *,
                  overwrite: bool = True, reflink: str = "auto", progress: Callable[[Progress], Any] | None = None,
                  job: Job | None = None) -> None:
        """Copy contents and permission bits (``FICLONE``, else ``copy_file_range``); the
        destination appears whole or not at all (also when cancelled). A final in-tree link
        at ``dst`` is followed."""
        try:
            how = _REFLINK[reflink]
        except (KeyError, TypeError):
            raise ValueError("reflink must be 'auto', 'always' or 'never'") from None
        s, d = _enc(src), _enc(dst)
        held = ffi.new("int *", -1)
        try:
            _with_progress(lambda j: self._walked(lib.bn_copy_file(self._r, s, d, bool(overwrite), how, 0, _job_ptr(j),
                                                                   held), src, dst), job, progress)
        finally:
            _release(held[0])

    def cp(self, src: AnyStr | os.PathLike[AnyStr], dst: AnyStr | os.PathLike[AnyStr], *,
           recursive: bool = False, overwrite: bool = True, preserve: bool = True,
           progress: Callable[[Progress], Any] | None = None, job: Job | None = None) -> None:
        """``cp [-r] [-p]`` with ``dst`` naming the copy itself (as ``shutil.copytree``).
        The top-level source is followed; links inside are copied as links.  Cancelled, what
        is copied so far stays (as after an interrupted ``cp -r``); a file being copied then
        is not published."""
        flags = (
            (lib.BN_CP_RECURSIVE if recursive else 0)
            | (lib.BN_CP_OVERWRITE if overwrite else 0)
            | (lib.BN_CP_PRESERVE if preserve else 0)
        )
        s, d = _enc(src), _enc(dst)
        _with_progress(lambda j: self._walked(lib.bn_cp(self._r, s, d, flags, _job_ptr(j)), src, dst), job, progress)

    def rm(self, path: AnyStr | os.PathLike[AnyStr], *, recursive: bool = False, force: bool = False,
           progress: Callable[[Progress], Any] | None = None, job: Job | None = None) -> None:
        """``rm [-r] [-f]`` done natively by descending dirfds; never follows a symlink.
        Cancelled, what is not removed yet stays."""
        p = _enc(path)
        _with_progress(lambda j: self._walked(lib.bn_rm(self._r, p, bool(recursive), bool(force), _job_ptr(j)), path),
                       job, progress)



#: directory fds a walk holds at most (the nearest levels; the others are reopened)
_WALK_FDS = 64


def _join(parent: Any, name: Any) -> Any:
    """A walk's child path: under the root itself just the name ("a", not "./a"), as
    pathlib's walk of ``Path(".")`` gives it."""
    return name if parent in (".", b".") else os.path.join(parent, name)


class _WalkFrame:
    __slots__ = ("path", "rel", "fd", "dev", "ino", "dirs", "files", "i", "via_link")

    def __init__(self, path: Any, rel: bytes, fd: int, st: os.stat_result, dirs: list[Any], files: list[Any],
                 via_link: bool) -> None:
        self.path = path          # the caller's dirpath (str or bytes)
        self.rel = rel            # its name under the parent frame (bytes)
        self.fd: int | None = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.dirs, self.files = dirs, files
        self.i = 0
        self.via_link = via_link  # entered through a followed link: reopened from the root


class _Walk:
    """Root.walk's state: a stack of frames, each listed whole on entry."""

    def __init__(self, root: Root, top: Any, top_down: bool, follow: bool) -> None:
        self.root = root
        self.top = os.fspath(top)
        self.as_bytes = isinstance(self.top, bytes)
        self.top_down = top_down
        self.follow = follow
        self.frames: list[_WalkFrame] = []

    def _name(self, b: bytes) -> Any:
        return b if self.as_bytes else os.fsdecode(b)

    def _list(self, fd: int, path: Any) -> tuple[list[Any], list[Any]]:
        if not self.follow:  # the common case: two strings split, no object per entry
            names = ffi.new("bn_names *")
            _check(lib.bn_list_names(fd, names), path)
            try:
                raw = ffi.buffer(names.buf, names.len)[:] if names.len else b""
                cut = names.dirs
            finally:
                lib.bn_names_free(names)
            as_str = not self.as_bytes
            return split_names(raw[:cut], as_str), split_names(raw[cut:], as_str)
        dirs: list[Any] = []
        files: list[Any] = []
        ancestors = {(f.dev, f.ino) for f in self.frames}
        with os.scandir(fd) as it:  # (scandir works on its own dup of fd)
            for e in it:
                name = os.fsencode(e.name) if self.as_bytes else e.name
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    dirs.append(name)
                elif self.follow and e.is_symlink() and self._link_to_dir(_join(path, name), ancestors):
                    dirs.append(name)
                else:
                    files.append(name)
        return dirs, files

    def _link_to_dir(self, path: Any, ancestors: set[tuple[int, int]]) -> bool:
        try:
            st = self.root.stat(path)  # followed beneath the root only: out is EscapeError
        except OSError:
            return False
        return _stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in ancestors

    def _enter(self, path: Any, rel: bytes, fd: int, via_link: bool) -> _WalkFrame:
        try:
            st = os.fstat(fd)
            dirs, files = self._list(fd, path)
        except BaseException:
            os.close(fd)
            raise
        f = _WalkFrame(path, rel, fd, st, dirs, files, via_link)
        self.frames.append(f)
        if len(self.frames) > _WALK_FDS:
            old = self.frames[-_WALK_FDS - 1]
            if old.fd is not None:
                os.close(old.fd)
                old.fd = None
        return f

    def _fd(self, k: int) -> int:
        """frames[k]'s fd, reopened from the nearest held ancestor (or the root, for a
        frame entered through a link) and checked to be the same directory."""
        f = self.frames[k]
        if f.fd is not None:
            return f.fd
        names: list[bytes] = []
        j = k
        while j >= 0 and self.frames[j].fd is None and not self.frames[j].via_link:
            names.append(self.frames[j].rel)
            j -= 1
        if j >= 0 and self.frames[j].fd is None:  # a followed link: from the root, by its path
            fd = _check(lib.bn_openat2(self.root._fd, _enc(f.path), os.O_RDONLY | os.O_DIRECTORY, 0,
                                       self.root._rx), f.path)
        else:
            base = self.frames[j].fd if j >= 0 else None
            assert base is not None
            fd = lib.bn_open_child_dir(base, b"/".join(reversed(names)))
        st = os.fstat(fd) if fd >= 0 else None
        if st is None or (st.st_dev, st.st_ino) != (f.dev, f.ino):
            if fd >= 0:
                os.close(fd)
            raise OSError(errno.EAGAIN, _ECHANGED_MESSAGE, f.path)
        f.fd = fd
        return fd

    def run(self) -> Iterator[tuple[Any, list[Any], list[Any]]]:
        top_fd = self.root._opendir(self.top)
        try:
            f = self._enter(self.top, b"", top_fd, True)
            if self.top_down:
                yield f.path, f.dirs, f.files
            while self.frames:
                f = self.frames[-1]
                if f.i < len(f.dirs):
                    name = f.dirs[f.i]
                    f.i += 1
                    path = _join(f.path, name)
                    if len(path) >= _PATH_MAX // 4 and len(os.fsencode(path)) >= _PATH_MAX:
                        continue  # listed, not entered: no call could name what is below, as os.walk
                    nb = os.fsencode(name)
                    pfd = self._fd(len(self.frames) - 1)
                    fd = lib.bn_open_child_dir(pfd, nb)
                    via = False
                    if fd in (-errno.ELOOP, -errno.ENOTDIR) and self.follow:  # a link chosen to be followed
                        try:
                            fd = self.root._opendir(path)
                        except OSError:
                            continue
                        via = True
                    if fd < 0:
                        continue  # vanished, swapped, unreadable: skipped, as os.walk does
                    try:
                        child = self._enter(path, nb, fd, via)
                    except OSError:
                        continue
                    if self.top_down:
                        yield child.path, child.dirs, child.files
                    continue
                if not self.top_down:
                    yield f.path, f.dirs, f.files
                if f.fd is not None:
                    os.close(f.fd)
                    f.fd = None
                self.frames.pop()
        finally:
            for fr in self.frames:
                if fr.fd is not None:
                    os.close(fr.fd)
            self.frames.clear()
