"""The crash journal: temporary names a killed daemon may have left, removed at next start.

Replacing an existing file atomically takes two steps on Linux, because an ``O_TMPFILE``
cannot be linked over an existing name: link it under a hidden temporary name
(``.NAME.beneathd-<16 hex>``), then ``renameat`` that over the destination.  A SIGKILL
between the two leaves the temporary name visible for good.

So the native helpers (``bn_jadd``/``bn_jdel`` in cffi_build.py) keep a record in a
private directory outside the root for as long as a temporary name exists: a symlink
named by the temporary's random part, pointing at the temporary's absolute path as the
kernel showed it (``/proc/self/fd``).  A clean run leaves the directory empty.  When a
``Root`` takes the journal (:meth:`Journal.replay`), each record left over is undone: if
its path is still beneath the root and its last component is the very temporary name
the record was made for, that regular file or symlink is unlinked (resolved beneath the
root, like every other operation), then the record is removed.

The directory is held with ``flock(LOCK_EX | LOCK_NB)``: one daemon per journal, so a
starting daemon never removes another live daemon's temporaries.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .root import Root

__all__ = ["Journal", "JournalBusy", "TEMP_NAME"]

#: a temporary's name: "." + (up to 200 bytes of) the destination's name + the random part
TEMP_NAME = re.compile(rb"\..+\.beneathd-([0-9a-f]{16})", re.S)
_RECORD = re.compile(rb"[0-9a-f]{16}")


class JournalBusy(OSError):
    """Another process (another daemon on the same root) holds the journal."""


class Journal:
    """An open, locked journal directory.  ``fileno()`` is what the native calls take."""

    def __init__(self, path: str | bytes | os.PathLike[Any]) -> None:
        self.path = os.fsdecode(os.fspath(path))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(errno.EWOULDBLOCK, "journal is held by another process", self.path) from None
        except BaseException:
            os.close(fd)
            raise
        if not os.access(f"/proc/self/fd/{fd}", os.W_OK | os.X_OK, effective_ids=False):
            os.close(fd)
            raise PermissionError(errno.EACCES, "journal directory is not writable", self.path)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def pending(self) -> list[bytes]:
        """The records present now (each names one temporary that may still exist)."""
        return sorted(n for n in map(os.fsencode, os.listdir(self._fd)) if _RECORD.fullmatch(n))

    def replay(self, root: Root) -> list[tuple[bytes, str]]:
        """Undo every record left over; returns ``(path beneath the root, outcome)`` for each.

        Outcomes: ``removed``, ``gone`` (the temporary no longer exists), ``skipped: ...``
        (it is no longer beneath the root, or no longer the same temporary name).
        """
        base = os.readlink(b"/proc/self/fd/%d" % root.fileno())
        prefix = base.rstrip(b"/") + b"/"
        done: list[tuple[bytes, str]] = []
        for rec in self.pending():
            try:
                target = os.readlink(rec, dir_fd=self._fd)
            except OSError:
                target = b""
            if target.startswith(prefix):
                rel = target[len(prefix):]
                done.append((rel, self._undo(root, rel, rec)))
            else:
                done.append((target, "skipped: not beneath the root"))
            try:
                os.unlink(rec, dir_fd=self._fd)
            except FileNotFoundError:
                pass
        return done

    @staticmethod
    def _undo(root: Root, rel: bytes, rec: bytes) -> str:
        m = TEMP_NAME.fullmatch(rel.rpartition(b"/")[2])
        if m is None or m.group(1) != rec:
            return "skipped: not the recorded temporary name"
        try:
            st = root.lstat(rel)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                return "skipped: not a file or symlink"
            root.unlink(rel)
        except (FileNotFoundError, NotADirectoryError):
            return "gone"
        except OSError as e:
            return f"skipped: {e.strerror or e}"
        return "removed"
