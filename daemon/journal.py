"""The crash journal: temporary names a killed daemon may have left, removed at next start.

Replacing an existing file atomically takes two steps on Linux, because an ``O_TMPFILE``
cannot be linked over an existing name: link it under a hidden temporary name
(``.NAME.beneathd-<16 hex>``), then ``renameat`` that over the destination.  A SIGKILL
between the two leaves the temporary name visible for good.

So the native helpers (``bn_jadd``/``bn_jdel`` in native/replace.c) keep a record for as long
as a temporary name exists, in the file ``journal`` of a private directory outside the
root: ``BN_JSLOTS`` slots of ``BN_JSLOT`` bytes, mapped ``MAP_SHARED`` (a store is in the
page cache at once and outlives the process; no syscall per record).  A slot in use holds
``b"BNJ1"``, a little-endian ``uint32`` length and the temporary's absolute path as the
kernel showed its directory (``/proc/self/fd``); a free slot starts with a zero byte.
When a ``Root`` takes the journal (:meth:`Journal.replay`), each record left over is
undone: if its path is still beneath the root and its last component is a temporary
name, that regular file, symlink or FIFO (``cp -r`` replaces links and FIFOs through
temporary names too) is unlinked (resolved beneath the root, like every
other operation).  Then the file is cleared and mapped for this process's own records.

The directory is held with ``flock(LOCK_EX | LOCK_NB)``: one daemon per journal, so a
starting daemon never removes another live daemon's temporaries.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import struct
from typing import TYPE_CHECKING, Any

from beneathd._native import ffi, lib

if TYPE_CHECKING:
    from .root import Root

__all__ = ["Journal", "JournalBusy", "TEMP_NAME", "record"]

FILE = "journal"
SLOT, SLOTS = lib.BN_JSLOT, lib.BN_JSLOTS
SIZE = SLOT * SLOTS
MAGIC = b"BNJ1"

#: a temporary's name: "." + (up to 200 bytes of) the destination's name + the random part
TEMP_NAME = re.compile(rb"\..+\.beneathd-[0-9a-f]{16}", re.S)


class JournalBusy(OSError):
    """Another process (another daemon on the same root) holds the journal."""


def record(path: bytes) -> bytes:
    """One slot's bytes naming ``path`` (what ``bn_jadd`` stores; for tests and tools)."""
    return MAGIC + struct.pack("<I", len(path)) + path


class Journal:
    """An open, locked journal directory and its mapped record file."""

    def __init__(self, path: str | bytes | os.PathLike[Any]) -> None:
        self.path = os.fsdecode(os.fspath(path))
        self._map: Any = ffi.NULL
        self._file = -1
        self._dir = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(self._dir, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalBusy(errno.EWOULDBLOCK, "journal is held by another process", self.path) from None
            self._file = os.open(FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                 dir_fd=self._dir)
            if not stat.S_ISREG(os.fstat(self._file).st_mode):
                raise OSError(errno.EINVAL, "journal file is not a regular file", self.path)
        except BaseException:
            self.close()
            raise

    @property
    def dirfd(self) -> int:
        """The journal directory (Landlock must let the daemon remove the file at exit)."""
        return self._dir

    @property
    def handle(self) -> Any:
        """What the native calls take (``bn_journal *``); NULL until :meth:`replay` ran."""
        return self._map

    def close(self) -> None:
        m, self._map = self._map, ffi.NULL
        if m != ffi.NULL:
            lib.bn_journal_unmap(m)
        for name in ("_file", "_dir"):
            fd = getattr(self, name)
            setattr(self, name, -1)
            if fd >= 0:
                os.close(fd)

    def discard_if_clean(self) -> bool:
        """At a clean exit: remove the record file if it holds no record (the directory is
        then empty, and removable).  The mapping stays valid until :meth:`close`."""
        if self._file < 0 or self.pending():
            return False
        try:
            os.unlink(FILE, dir_fd=self._dir)
        except OSError:
            return False
        return True

    def pending(self) -> list[bytes]:
        """The paths recorded in the file now (each names a temporary that may exist)."""
        data = os.pread(self._file, SIZE, 0)
        out = []
        for off in range(0, len(data) - 8, SLOT):
            if data[off:off + 4] == MAGIC:
                (n,) = struct.unpack_from("<I", data, off + 4)
                if 0 < n <= SLOT - 8 and off + 8 + n <= len(data):
                    out.append(data[off + 8:off + 8 + n])
        return out

    def replay(self, root: Root) -> list[tuple[bytes, str]]:
        """Undo every record left over, clear the file and map it for new records.
        Returns ``(path beneath the root, outcome)`` for each record: ``removed``, ``gone``
        (the temporary no longer exists) or ``skipped: ...`` (no longer beneath the root,
        not a temporary name, not a file)."""
        base = os.readlink(b"/proc/self/fd/%d" % root.fileno())
        prefix = base.rstrip(b"/") + b"/"
        done: list[tuple[bytes, str]] = []
        for target in self.pending():
            if target.startswith(prefix) and b"\0" not in target:
                rel = target[len(prefix):]
                done.append((rel, self._undo(root, rel)))
            else:
                done.append((target, "skipped: not beneath the root"))
        os.ftruncate(self._file, 0)  # cleared; then full size, so the mapping never faults
        os.ftruncate(self._file, SIZE)
        if self._map == ffi.NULL:
            m = lib.bn_journal_map(self._file)
            if m == ffi.NULL:
                e = ffi.errno
                raise OSError(e, f"cannot map the journal: {os.strerror(e)}", self.path)
            self._map = m
        return done

    @staticmethod
    def _undo(root: Root, rel: bytes) -> str:
        if TEMP_NAME.fullmatch(rel.rpartition(b"/")[2]) is None:
            return "skipped: not a temporary name"
        try:
            st = root.lstat(rel)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
                return "skipped: not a file, symlink or FIFO"
            root.unlink(rel)
        except (FileNotFoundError, NotADirectoryError):
            return "gone"
        except OSError as e:
            return f"skipped: {e.strerror or e}"
        return "removed"
