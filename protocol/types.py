"""Value types shared by ``Root`` and the clients: stat results and directory entries.

A stat result travels as a list of 13 ints (see :data:`STAT_FIELDS`) and is rebuilt as a
real ``os.stat_result``; a directory entry travels as ``[name, kind, target_kind, stat]``.
"""

from __future__ import annotations

import array
import errno
import os
import stat as _stat
import sys
import time
from typing import Any, NamedTuple

from .batch import gc_paused

__all__ = [
    "Progress",
    "entries_from_packed",
    "split_names",
    "PACKED_STAT",
    "WatchEvent",
    "WATCH_KINDS",
    "AtomicFile",
    "read_counted",
    "walk_counted",
    "write_counted",
    "FileProxy",
    "STAT_FIELDS",
    "KINDS",
    "stat_from_list",
    "stat_to_list",
    "kind_of_mode",
    "DirEntry",
]

#: how often a ``progress`` callback is called at most while a call runs (DESIGN.md)
_PROGRESS_INTERVAL = 0.1


class Progress(NamedTuple):
    """What a long call has done so far (``progress=`` callbacks get one): entries copied
    or removed, bytes of file data copied. Monotone during a call; the last one is the total."""

    entries: int
    bytes: int


class WatchEvent(NamedTuple):
    """One change beneath a watch's top (DESIGN.md "Watch"): ``path`` relative to the root in
    the caller's str/bytes type; ``cookie`` pairs a ``moved_from`` with its ``moved_to``
    (0 for the other kinds); an ``overflow`` event (path: the watch's top) says events were
    dropped and the caller should list again."""

    kind: str
    path: Any
    is_dir: bool
    cookie: int


#: the kinds of WatchEvent, as the wire names them
WATCH_KINDS = ("created", "modified", "attrib", "deleted", "moved_from", "moved_to", "overflow")


#: The order of the wire form of a stat result.
STAT_FIELDS = (
    "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
    "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev",
)

#: File kinds, as a DirEntry and the wire name them.
KINDS = ("file", "dir", "symlink", "fifo", "socket", "char", "block", "other")

_NS = 1_000_000_000
_stat_result = os.stat_result


def stat_from_list(seq: Any) -> os.stat_result:
    """An ``os.stat_result`` (the same 10 + float times + ns times + blksize, blocks, rdev)
    from 13 ints in :data:`STAT_FIELDS` order; other ints-alike are converted (slowly)."""
    if seq.__class__ is list and len(seq) == 13:
        for x in seq:
            if x.__class__ is not int:
                break
        else:
            return _stat_of(seq)
    v = [int(x) for x in seq]
    if len(v) != 13:
        raise ValueError(f"a stat result has 13 fields, got {len(v)}")
    return _stat_of(v)


def _stat_of(v: list[int]) -> os.stat_result:
    mode, ino, dev, nlink, uid, gid, size, a_ns, m_ns, c_ns, blksize, blocks, rdev = v
    # os.stat_result: 10 sequence fields, then (by index) st_atime, st_mtime, st_ctime
    # (float), st_atime_ns, st_mtime_ns, st_ctime_ns, st_blksize, st_blocks, st_rdev.
    return _stat_result((mode, ino, dev, nlink, uid, gid, size, a_ns // _NS, m_ns // _NS, c_ns // _NS,
                         a_ns / _NS, m_ns / _NS, c_ns / _NS, a_ns, m_ns, c_ns, blksize, blocks, rdev))



def stat_to_list(st: os.stat_result) -> list[int]:
    """The wire form of a stat result: 13 ints in :data:`STAT_FIELDS` order (a listing
    makes one per entry: plain attribute reads, Linux always has the last three)."""
    return [
        st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
        st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_blksize, st.st_blocks, st.st_rdev,
    ]


_KINDS = {
    _stat.S_IFREG: "file",
    _stat.S_IFDIR: "dir",
    _stat.S_IFLNK: "symlink",
    _stat.S_IFIFO: "fifo",
    _stat.S_IFSOCK: "socket",
    _stat.S_IFCHR: "char",
    _stat.S_IFBLK: "block",
}


def kind_of_mode(mode: int) -> str:
    """``"file"``, ``"dir"``, ``"symlink"``, ``"fifo"``, ``"socket"``, ``"char"``, ``"block"`` or ``"other"``."""
    return _KINDS.get(mode & 0o170000, "other")


class DirEntry:
    """One entry of ``scandir()``, like ``os.DirEntry`` but detached from any fd.

    ``kind`` is the entry's own type (lstat); ``target_kind`` is what a symlink points to
    beneath the root (``None``: dangling, or pointing out); ``stat_list`` is the lstat data
    (13 ints) or ``None``; ``target_stat_list`` is a symlink's target's stat data, resolved
    beneath the root when the listing was made (``None`` for non-links, dangling links and
    links out); ``link_target`` is a symlink's text (str or bytes like ``name``; ``None``
    for non-links), so that a file browser lists a directory in one call.
    """

    __slots__ = ("name", "path", "kind", "target_kind", "_stat_list", "_target_stat_list", "_stat", "link_target")

    def __init__(self, name: Any, path: Any, kind: str | None, target_kind: str | None,
                 stat_list: Any = None, target_stat_list: Any = None, link_target: Any = None) -> None:
        self.name = name
        self.path = path
        self.kind = kind
        self.target_kind = target_kind
        # 13 ints each (converted here once: stat() then takes the fast way)
        self._stat_list = [int(x) for x in stat_list] if stat_list is not None else None
        self._target_stat_list = [int(x) for x in target_stat_list] if target_stat_list is not None else None
        self._stat: os.stat_result | None = None
        self.link_target = link_target

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    def _kind(self, follow_symlinks: bool) -> str | None:
        if follow_symlinks and self.kind == "symlink":
            return self.target_kind
        return self.kind

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._kind(follow_symlinks) == "dir"

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._kind(follow_symlinks) == "file"

    def is_symlink(self) -> bool:
        return self.kind == "symlink"

    def is_junction(self) -> bool:
        return False

    def inode(self) -> int:
        if self._stat_list is None:
            raise OSError(0, "no stat data for this entry", self.name)
        return self._stat_list[1]

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """The entry's lstat data, or for a symlink with ``follow_symlinks`` its target's
        (``FileNotFoundError`` when it dangles or points outside the root)."""
        if follow_symlinks and self.kind == "symlink":
            if self._target_stat_list is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), self.path)
            return _stat_of(self._target_stat_list)
        if self._stat_list is None:
            raise OSError(0, "no stat data for this entry", self.name)
        if self._stat is None:
            self._stat = _stat_of(self._stat_list)
        return self._stat

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DirEntry):
            return NotImplemented
        return self.to_wire() == other.to_wire() and self.path == other.path

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> list[Any]:
        """``[name (bin), kind, target_kind, stat list or nil, target stat list or nil,
        link text (bin) or nil]``; the path is rebuilt by the client."""
        lt = self.link_target
        return [os.fsencode(self.name), self.kind, self.target_kind, self._stat_list, self._target_stat_list,
                None if lt is None else os.fsencode(lt)]

    @classmethod
    def from_wire(cls, item: Any, parent: Any) -> DirEntry:
        """Rebuild from :meth:`to_wire` with ``parent`` the caller's directory (str or bytes)."""
        if not isinstance(item, (list, tuple)) or len(item) not in (4, 5, 6):
            raise ValueError("malformed DirEntry")
        name_b, kind, target_kind, st = item[:4]
        tst = item[4] if len(item) >= 5 else None
        lt = item[5] if len(item) == 6 else None
        if not isinstance(name_b, bytes) or not (lt is None or isinstance(lt, bytes)):
            raise ValueError("malformed DirEntry name")
        if kind is not None and kind not in KINDS or target_kind is not None and target_kind not in KINDS:
            raise ValueError("malformed DirEntry kind")
        for sl in (st, tst):
            if sl is not None and (not isinstance(sl, list) or len(sl) != 13
                                   or not all(isinstance(x, int) for x in sl)):
                raise ValueError("malformed DirEntry stat")
        p = os.fspath(parent)
        as_bytes = isinstance(p, bytes)
        name: Any = name_b if as_bytes else os.fsdecode(name_b)
        if lt is not None and not as_bytes:
            lt = os.fsdecode(lt)
        return cls(name, os.path.join(p, name), kind, target_kind, st, tst, lt)


#: bytes of one stat record in the packed form of a listing: 13 little-endian int64
PACKED_STAT = 13 * 8
_S_IFMT = 0o170000
_FSENC = sys.getfilesystemencoding()
_FSERR = sys.getfilesystemencodeerrors()


def split_names(b: bytes, as_str: bool) -> list[Any]:
    """Names each ended by a NUL, in one string (``bn_list_names``, ``bn_scan_dir``): as
    bytes, or decoded as ``os.fsdecode`` would, in one call for the lot (a NUL ends every
    name and no UTF-8 sequence spans one, so decoding the lot equals decoding each).
    ValueError if the last does not end in a NUL."""
    out: list[Any] = (b.decode(_FSENC, _FSERR).split("\0") if as_str else b.split(b"\0")) if b else [""]
    if out.pop():  # (what followed the last NUL: nothing, if it ended in one)
        raise ValueError("malformed names: the last does not end in a NUL")
    return out


def _records(b: bytes) -> list[int]:
    """13-int64 records as one list; ino, dev and rdev are unsigned (as ``os.stat`` says:
    an overlayfs or NFS inode number may be 2**63 or more), the rest signed."""
    a = array.array("q")
    a.frombytes(b)
    if sys.byteorder == "big":
        a.byteswap()  # the wire is little-endian
    v = a.tolist()
    for k in (1, 2, 12):
        col = v[k::13]
        if col and min(col) < 0:
            v[k::13] = [x + (1 << 64) if x < 0 else x for x in col]
    return v


def entries_from_packed(names: Any, stats: Any, links: Any, targets: Any, *, prefix: Any) -> list[DirEntry]:
    """The entries of a listing in its packed form (``Root._scandir_packed``, and over the
    wire with the ``packed`` call option): ``names`` each ending in a NUL, their lstat
    records in ``stats`` (:data:`PACKED_STAT` bytes each), and for each symlink among them
    in order its text (ending in a NUL; empty: unknown) in ``links`` and its target's record
    in ``targets`` (mode 0: dangling or pointing out). Four strings instead of an array per
    entry: the daemon makes them in C and the client splits them in a few calls, where the
    array form costs ~8 us an entry to build, pack, unpack and check. ``prefix`` is the
    listed path as the caller gave it (str or bytes): names, paths and link texts echo it.
    Raises ValueError if the parts do not fit together."""
    if not (names.__class__ is bytes and stats.__class__ is bytes and links.__class__ is bytes
            and targets.__class__ is bytes) or len(stats) % PACKED_STAT or len(targets) % PACKED_STAT:
        raise ValueError("malformed packed listing")
    as_str = isinstance(prefix, str)  # (a str subclass is a str path too)
    nl = split_names(names, as_str)
    lk = split_names(links, as_str)
    sep: Any = "/" if as_str else b"/"
    sv = _records(stats)
    tv = _records(targets)
    if len(nl) * 13 != len(sv) or len(lk) * 13 != len(tv):
        raise ValueError("malformed packed listing: counts differ")
    base = prefix if not prefix or prefix.endswith(sep) else prefix + sep
    if len(nl) > 4096:
        with gc_paused():  # (no cycles among them; a 200k listing: 0.98 -> 0.38 s)
            return _entries(nl, sv, lk, tv, base)
    return _entries(nl, sv, lk, tv, base)


def _entries(nl: list[Any], sv: list[int], lk: list[Any], tv: list[int], base: Any) -> list[DirEntry]:
    kinds = _KINDS
    new = DirEntry.__new__
    out: list[DirEntry] = []
    append = out.append
    j = 0
    for i, name in enumerate(nl):
        st = sv[13 * i:13 * i + 13]
        kind = kinds.get(st[0] & _S_IFMT, "other")
        e = new(DirEntry)
        e.name = name
        e.path = base + name
        e.kind = kind
        e._stat_list = st
        e._stat = None
        if kind == "symlink":
            if j >= len(lk):
                raise ValueError("malformed packed listing: more links than texts")
            tst = tv[13 * j:13 * j + 13]
            e.link_target = lk[j] or None
            if tst[0]:
                e.target_kind = kinds.get(tst[0] & _S_IFMT, "other")
                e._target_stat_list = tst
            else:
                e.target_kind = None
                e._target_stat_list = None
            j += 1
        else:
            e.target_kind = kind
            e._target_stat_list = None
            e.link_target = None
        append(e)
    if j != len(lk):
        raise ValueError("malformed packed listing: fewer links than texts")
    return out


def read_counted(f: Any, progress: Any, job: Any = None, chunk: int = 8 << 20) -> bytes:
    """Read ``f`` to its end in chunks (Root and the clients): ``progress`` at most every
    100 ms and once at the end (one entry, the bytes), a ``job``'s cancel (Root's
    ``Job``) honoured between chunks."""
    if progress is None and job is None:
        return f.readall()  # type: ignore[no-any-return]
    parts: list[bytes] = []
    done = 0
    last = time.monotonic()
    while True:
        if job is not None and job.cancelled:
            raise OSError(errno.ECANCELED, "cancelled")
        b = f.read(chunk)
        if not b:
            break
        parts.append(b)
        done += len(b)
        if job is not None:
            job._c.bytes = done
        if progress is not None and time.monotonic() - last >= _PROGRESS_INTERVAL:
            last = time.monotonic()
            progress(Progress(0, done))
    if job is not None:
        job._c.entries = 1
    if progress is not None:
        progress(Progress(1, done))
    return b"".join(parts)


def walk_counted(tuples: Any, progress: Any) -> Any:
    """A walk's tuples passed through, with ``progress`` (entries listed so far, the top
    included) at most every 100 ms and once at the end."""
    if progress is None:
        yield from tuples
        return
    n = 1
    last = time.monotonic()
    for t in tuples:
        n += len(t[1]) + len(t[2])
        yield t
        if time.monotonic() - last >= _PROGRESS_INTERVAL:
            last = time.monotonic()
            progress(Progress(n, 0))
    progress(Progress(n, 0))


def write_counted(f: Any, data: Any, progress: Any, chunk: int = 16 << 20) -> None:
    """Write ``data`` to ``f`` whole in chunks, ``progress`` as :func:`read_counted` says.
    A failed write (``ENOSPC``, ``EDQUOT``, ``EFBIG``) names ``f.name``, the caller's path
    (``write_file``'s error, not a bare file object's)."""
    mv = memoryview(data).cast("B")
    last = time.monotonic()
    done = 0
    while done < len(mv):
        try:
            done += f.write(mv[done:done + chunk])
        except OSError as e:
            if e.filename is None:
                e.filename = getattr(f, "name", None)
            raise
        if progress is not None and time.monotonic() - last >= _PROGRESS_INTERVAL:
            last = time.monotonic()
            progress(Progress(0, done))
    if progress is not None:
        progress(Progress(1, done))


class FileProxy:
    """A file object standing in front of another (everything not defined here is the
    wrapped one's); ``closed`` is its own. The base of the atomic writers' file objects."""

    def __init__(self, f: Any, path: Any) -> None:
        self._f = f
        self.name = path
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __iter__(self) -> Any:
        return iter(self._f)

    @property
    def closed(self) -> bool:
        return self._done

    def _drop_local(self) -> bool:
        """Close the wrapped file for good without publishing; False if already done."""
        if self._done:
            return False
        self._done = True
        try:
            self._f.close()
        except OSError:
            pass
        return True


class AtomicFile(FileProxy):
    """``open(path, mode, atomic=True)``'s file object (``Root`` and ``Client``).

    Writes go to an anonymous file in the target's real directory; :meth:`close` publishes
    it at ``path`` whole (for ``x`` modes raising ``FileExistsError`` if ``path`` exists by
    then, with nothing changed); :meth:`discard`, leaving a ``with`` block by an exception,
    or dropping the object unclosed publishes nothing.  Everything else is the underlying
    file object's (``write``, ``seek``, ``read`` with ``+`` ...).
    """

    def __init__(self, f: Any, publish: Any, discard: Any, path: Any) -> None:
        super().__init__(f, path)
        self._publish = publish
        self._discard = discard

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def close(self) -> None:
        """Flush and publish (once; later calls do nothing)."""
        if self._done:
            return
        try:
            self._f.close()  # flushes: a failed write is raised here, and nothing published
        except BaseException:
            self.discard()
            raise
        self._done = True
        try:
            self._publish()
        except OSError as e:
            if e.filename is None:
                e.filename = self.name
            raise

    def discard(self) -> None:
        """Drop what was written; nothing is published."""
        if self._drop_local():
            self._discard()

    def __del__(self) -> None:
        try:
            if not self._done:
                self.discard()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<beneathd.AtomicFile {self.name!r}{' done' if self._done else ''}>"
