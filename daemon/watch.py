"""Watch: inotify events beneath the root, never from outside it.

Every watched directory is opened beneath the root by ``native/tree.c:bn_watch_tree``
(``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``) and watched through its own fd
(``/proc/self/fd/N``), so no path a project user can change is ever handed to
``inotify_add_watch``. What stays to be kept here is the meaning of the kernel's events,
which are about inodes: a watched directory moved out of the root keeps its kernel watch.
The rules that keep events from naming anything outside:

- One inotify instance per watch: its queue is in the order things happened, so every
  event that follows a move of a directory in that queue happened after the move.
- A directory moved away (``IN_MOVED_FROM`` in its watched parent) is cut off at once: its
  subtree's events are dropped from then on. A matching ``IN_MOVED_TO`` (same cookie, in
  the same read) inside the tree puts it back under its new name; otherwise its kernel
  watches are removed.
- Above the top: each directory between the root and the top is watched for
  ``IN_MOVE_SELF``/``IN_DELETE_SELF`` only; one of them (or the top itself) moved or
  deleted ends the watch (a ``moved_from``/``deleted`` event for the top, then the end),
  since the top's path no longer says where it is.
- A new directory (created, or moved in from elsewhere) is opened from the root by the
  path of its parent *and checked to be that parent* (device and inode); a parent that is
  no longer there is skipped (its move's events follow in the queue).

The event queue is bounded (``max_queue``): past it, one ``overflow`` event replaces what
was waiting, and events until that one is taken are dropped (the caller resyncs after
it, which covers them). A kernel queue overflow (``IN_Q_OVERFLOW``) gives the same event
and the kernel watches are placed again from the top.
"""

from __future__ import annotations

import errno
import os
import select
import stat as _stat
import struct
import threading
import time
from collections import deque
from typing import Any, Iterator

from beneathd._native import ffi, lib

from ..protocol.types import WATCH_KINDS, WatchEvent

__all__ = ["Watch", "WatchBudget", "KINDS", "MAX_QUEUE"]

# inotify(7) (the kernel ABI)
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_EXCL_UNLINK = 0x4000000

#: what a watched directory of the tree reports
_MASK = (IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
         | IN_MOVE_SELF | IN_EXCL_UNLINK)
#: what a directory above the top is watched for
_ABOVE = IN_MOVE_SELF | IN_DELETE_SELF

KINDS = WATCH_KINDS
#: the largest max_queue a caller may ask for (the daemon's memory per watch is bounded by it)
MAX_QUEUE = 65536
_HEADER = struct.Struct("iIII")
_READ = 256 * 1024
#: errors of bn_watch_tree that mean "that directory is no longer there as expected": its
#: own events follow in the queue, nothing is watched
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


class _Changed(OSError):
    """bn_watch_tree's BN_ECHANGED (a directory moved while it was walked), the same
    ``OSError(EAGAIN)`` the caller of a setup gets, told apart without its message."""


def _sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as f:
            return f.read().strip()
    except OSError:
        return "?"


class WatchBudget:
    """Watched directories a daemon or a connection may hold (``--max-watches``): taking
    more raises ``OSError(ENOSPC)``, as inotify does, naming the limit. Shared by the
    daemon's loop and the worker threads that set watches up, hence the lock."""

    def __init__(self, limit: int, what: str, parent: WatchBudget | None = None) -> None:
        self.limit = limit
        self.what = what
        self.parent = parent
        self.used = 0
        self._lock: threading.Lock = parent._lock if parent is not None else threading.Lock()

    def room(self) -> int:
        with self._lock:
            return self._room()

    def _room(self) -> int:
        r = self.limit - self.used
        return r if self.parent is None else min(r, self.parent._room())

    def take(self, n: int) -> None:
        with self._lock:
            b: WatchBudget | None = self
            while b is not None:
                if b.used + n > b.limit:
                    raise b.full()
                b = b.parent
            b = self
            while b is not None:
                b.used += n
                b = b.parent

    def give(self, n: int) -> None:
        with self._lock:
            b: WatchBudget | None = self
            while b is not None:
                b.used -= n
                b = b.parent

    def full(self) -> OSError:
        b: WatchBudget = self
        while b.parent is not None and b.limit - b.used > b.parent.limit - b.parent.used:
            b = b.parent
        return OSError(errno.ENOSPC, f"watch limit reached: {b.what} watches at most {b.limit} directories")


class _Dir:
    __slots__ = ("wd", "parent", "name", "rel", "dev", "ino", "children", "live")

    def __init__(self, wd: int, parent: _Dir | None, name: bytes, rel: bytes, dev: int, ino: int) -> None:
        self.wd = wd
        self.parent = parent
        self.name = name
        self.rel = rel          # its real path relative to the root (b"" for the root)
        self.dev, self.ino = dev, ino
        self.children: dict[bytes, _Dir] = {}
        self.live = True        # False while cut off (moved away, not yet back)

    def subtree(self) -> Iterator[_Dir]:
        stack = [self]
        while stack:
            d = stack.pop()
            yield d
            stack.extend(d.children.values())


def _join(rel: bytes, name: bytes) -> bytes:
    return rel + b"/" + name if rel else name


class Watch:
    """``Root.watch``: an iterator of :class:`WatchEvent` (and a context manager).

    ``fileno()`` is the inotify fd, for ``select``/``poll``: readable means ``next(0)``
    has something to read (which may still all be filtered out: ``next(timeout=0)``
    raises ``TimeoutError`` then). The daemon drives the same object without blocking:
    :meth:`read` when the fd is readable, :meth:`take` for what is waiting."""

    def __init__(self, root: Any, path: Any, recursive: bool = True, max_queue: int = 4096,
                 budget: WatchBudget | None = None, job: Any = None) -> None:
        if isinstance(max_queue, bool) or not isinstance(max_queue, int):
            raise TypeError(f"max_queue must be an int, not {type(max_queue).__name__}")
        if not 1 <= max_queue <= MAX_QUEUE:
            raise ValueError(f"max_queue must be from 1 to {MAX_QUEUE} (the daemon holds that many events per watch)")
        from .root import _ECHANGED_MESSAGE, _check, _enc  # (root imports this module)
        self._check = _check
        self._changed_message = _ECHANGED_MESSAGE
        self._r = root._r
        self._caller = path
        self.as_bytes = isinstance(os.fspath(path), bytes)
        self.recursive = bool(recursive)
        self.max_queue = max_queue
        self._budget = budget
        self._job = job
        self._held = 0                      # directories counted in the budget
        self._dirs: dict[int, _Dir] = {}    # wd -> watched directory of the tree
        self._above: set[int] = set()       # wds of the directories above the top
        self._pending: deque[tuple[str, bytes, bool, int]] = deque()
        self._overflowed = False
        self._moving: dict[int, _Dir] = {}  # cookie -> a directory moved away, this read
        self._top: _Dir | None = None       # the watched directory (a file's: its directory)
        self._stale = False                 # rebuild after this read (see _grow)
        self.ended = False                  # no more events will come (the top went)
        self.error: OSError | None = None   # why it ended, if by an error
        self._fd = -1
        p = _enc(path)
        disp = p.rstrip(b"/") or (b"/" if p.startswith(b"/") else b".")
        self._disp = disp                   # the caller's top, as events name it
        real = _enc(root.realpath(path))
        self._real = b"" if real == b"." else real
        st = root.stat(path)  # follows an in-tree link; out: EscapeError
        self._leaf: bytes | None = None     # watching a file: its name in the watched parent
        if not _stat.S_ISDIR(st.st_mode):
            parent, _, leaf = self._real.rpartition(b"/")
            self._leaf, self._real, self.recursive = leaf, parent, False
        fd = lib.bn_inotify_init()
        if fd == -errno.EMFILE:
            raise OSError(errno.EMFILE, "cannot make an inotify instance: the per-user limit "
                                        f"(fs.inotify.max_user_instances = {_sysctl('max_user_instances')}) "
                                        "or the open-file limit is reached")
        self._fd = _check(fd, path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # -- setup -----------------------------------------------------------------------------

    def _setup(self) -> None:
        """Watch the directories above the top, then the tree (each directory watched before
        it is listed, so nothing created while this runs is missed). If the tree holds a
        directory watched as one above the top (one was moved into the tree between the
        two steps: the kernel hands back the same watch), the directories above are not the
        top's any more: start again (a few times, then EAGAIN)."""
        for _ in range(8):
            parts = self._real.split(b"/") if self._real else []
            for i in range(1, len(parts)):
                above = b"/".join(parts[:i])
                e = self._tree(above, 0, 0, None, _ABOVE, 0)
                if e:
                    self._above.add(e[0][0])
            entries = self._tree(self._real, 0, 0, None, _MASK, 1 if self.recursive else 0)
            if not any(e[0] in self._above for e in entries):
                self._adopt(entries, None, self._real)
                self._stale = False  # (a directory twice in one walk: a bind mount, watched once)
                return
            self._forget_all()
        raise OSError(errno.EAGAIN, "the directories above the watched path kept moving into it", self._caller)

    def _tree(self, rel: bytes, dev: int, ino: int, name: bytes | None, mask: int, flags: int
              ) -> list[tuple[int, int, bytes, bool, int, int]]:
        """bn_watch_tree: the entries (wd, parent index, name, is_dir, dev, ino) it placed or
        found. The kernel hands back the watch it has for an inode already watched (a
        directory the table knows, or one seen twice in this walk through a bind mount:
        ``_adopt`` sorts them out), so the budget is taken for the new watches only (or
        they are removed)."""
        room = self._budget.room() if self._budget is not None else 1 << 30
        out = ffi.new("bn_wlist *")
        r = lib.bn_watch_tree(self._r, self._fd, rel, dev, ino, ffi.NULL if name is None else name, mask, flags,
                              max(room, 0), ffi.NULL if self._job is None else self._job._c, out)
        try:
            entries = []
            names = ffi.buffer(out.names, out.len)[:] if out.len else b""
            for i in range(out.n):
                e = out.e[i]
                s = e.name
                entries.append((e.wd, e.parent, names[s:names.index(b"\0", s)], bool(e.is_dir), e.dev, e.ino))
        finally:
            lib.bn_wlist_free(out)
        known = self._dirs.keys() | self._above
        placed: list[int] = []  # new to this instance: counted, and removed on failure
        seen: set[int] = set()
        for e in entries:
            wd = e[0]
            if wd >= 0 and wd not in known and wd not in seen:
                seen.add(wd)
                placed.append(wd)
        if r == -errno.ENOSPC:
            self._rm(placed)
            if self._budget is not None and len(placed) >= room:
                raise self._budget.full()
            raise OSError(errno.ENOSPC, "the kernel's inotify watch limit is reached "
                                        f"(fs.inotify.max_user_watches = {_sysctl('max_user_watches')})")
        if r < 0:
            self._rm(placed)
            if r == -errno.ECANCELED:
                raise OSError(errno.ECANCELED, "cancelled", self._caller)
            if r == -lib.BN_ECHANGED:
                raise _Changed(errno.EAGAIN, self._changed_message, self._caller)
            self._check(r, self._caller)
        if self._budget is not None:
            try:
                self._budget.take(len(placed))
            except OSError:
                self._rm(placed)
                raise
        self._held += len(placed)
        return entries

    def _rm(self, wds: list[int]) -> None:
        for wd in wds:
            lib.bn_inotify_rm(self._fd, wd)

    def _adopt(self, entries: list[tuple[int, int, bytes, bool, int, int]], parent: _Dir | None, rel: bytes,
               report: bool = False) -> None:
        """Put bn_watch_tree's entries in the table under ``parent`` (the first entry is
        the directory itself, named ``rel``); with ``report``, a ``created`` event for each
        entry below the first (what a new directory held when its watch landed)."""
        made: list[_Dir | None] = []
        for wd, pi, name, is_dir, dev, ino in entries:
            up = made[pi] if pi >= 0 else parent
            if pi >= 0 and up is None:
                made.append(None)
                continue
            path = rel if pi < 0 else _join(up.rel, name)  # type: ignore[union-attr]
            if report and pi >= 0:
                self._push("created", path, is_dir, 0)
            if wd < 0:
                made.append(None)
                continue
            known = self._dirs.get(wd)
            if known is not None or wd in self._above:
                # the kernel handed back a watch this instance has: the same directory at
                # the same place (a walk that overlaps one before it: fine), or somewhere
                # else: moved here before its move's events were read (or a bind mount).
                # Rather than untangle the table then, place every watch again after this
                # read (an overflow event: the caller lists again)
                if known is None or known.rel != path:
                    self._stale = True
                made.append(known if known is not None and known.rel == path else None)
                continue
            d = _Dir(wd, up, name if pi >= 0 else (rel.rpartition(b"/")[2]), path, dev, ino)
            if up is None:
                self._top = d
            self._dirs[wd] = d
            if up is not None:
                up.children[d.name] = d
            made.append(d)

    # -- the queue -------------------------------------------------------------------------

    def _push(self, kind: str, path: bytes, is_dir: bool, cookie: int) -> None:
        if self._overflowed:
            return
        q = self._pending
        if len(q) >= self.max_queue:
            q.clear()
            q.append(("overflow", self._disp, False, 0))
            self._overflowed = True
            return
        ev = (kind, self._show(path), is_dir, cookie)
        if kind == "modified" and q and q[-1] == ev:
            return  # the kernel coalesces the same way, but only for what it still holds
        q.append(ev)

    def _show(self, rel: bytes) -> bytes:
        """A real path beneath the root as the caller's top names it."""
        if self._leaf is not None:
            return self._disp
        real = self._real
        suffix = rel[len(real) + 1:] if real else rel
        if not suffix:
            return self._disp
        return suffix if self._disp == b"." else self._disp + b"/" + suffix

    def take(self, most: int) -> list[tuple[str, bytes, bool, int]]:
        """Up to ``most`` waiting events as ``(kind, path bytes, is_dir, cookie)``."""
        q = self._pending
        out = [q.popleft() for _ in range(min(most, len(q)))]
        if self._overflowed and not q:  # the overflow event (always the last) was taken
            self._overflowed = False
        return out

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # -- reading the kernel's events ---------------------------------------------------------

    def read(self) -> bool:
        """Read and interpret what the kernel has queued, without blocking. Returns False
        when there was nothing to read."""
        if self.ended or self._fd < 0:
            return False
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return False
        try:
            self._events(data)
        except OSError as e:  # a limit reached while following the tree's growth
            self._end(e)
        return True

    def _events(self, data: bytes) -> None:
        unpack = _HEADER.unpack_from
        off, n = 0, len(data)
        dirs = self._dirs
        while off < n and not self.ended:
            wd, mask, cookie, ln = unpack(data, off)
            name = data[off + 16: off + 16 + ln].rstrip(b"\0") if ln else b""
            off += 16 + ln
            if mask & IN_Q_OVERFLOW:
                self._rebuild()
                return
            d = dirs.get(wd)
            if d is None:
                if wd in self._above and mask & (IN_MOVE_SELF | IN_DELETE_SELF):
                    self._top_gone("moved_from")
                continue
            if mask & IN_IGNORED:
                if d is self._top:  # the top's watch went (deleted, unmounted)
                    self._top_gone("deleted")
                else:
                    self._drop(d)
                continue
            if not d.live:
                continue
            if not name:
                if d is self._top:
                    if mask & (IN_DELETE_SELF | IN_UNMOUNT):
                        self._top_gone("deleted")
                    elif mask & IN_MOVE_SELF and self._real:
                        self._top_gone("moved_from")
                    elif mask & IN_ATTRIB and self._leaf is None:
                        self._push("attrib", d.rel, True, 0)
                elif mask & IN_UNMOUNT:
                    self._drop(d)
                continue  # a subdirectory's own events: its parent reports them
            if self._leaf is not None and name != self._leaf:
                continue
            is_dir = bool(mask & IN_ISDIR)
            path = _join(d.rel, name)
            if mask & IN_CREATE:
                self._push("created", path, is_dir, 0)
                if is_dir and self.recursive:
                    self._grow(d, name, report=True)
            elif mask & IN_MOVED_FROM:
                self._push("moved_from", path, is_dir, cookie)
                child = d.children.pop(name, None) if is_dir else None
                if child is not None:
                    for c in child.subtree():
                        c.live = False  # cut off now: what follows happened after the move
                    child.parent = None
                    self._moving[cookie] = child
            elif mask & IN_MOVED_TO:
                self._push("moved_to", path, is_dir, cookie)
                if is_dir and self.recursive:
                    back = self._moving.pop(cookie, None)
                    if back is not None:
                        self._reattach(back, d, name)
                    else:
                        self._grow(d, name, report=False)
            elif mask & IN_DELETE:
                self._push("deleted", path, is_dir, 0)
                child = d.children.pop(name, None) if is_dir else None
                if child is not None:
                    self._drop(child, rm=False)
            elif mask & IN_MODIFY:
                self._push("modified", path, is_dir, 0)
            elif mask & IN_ATTRIB:
                self._push("attrib", path, is_dir, 0)
        # a directory moved away and not back within this read: moved out of the tree
        moving, self._moving = self._moving, {}
        for child in moving.values():
            self._drop(child)
        if self._stale and not self.ended:
            self._rebuild()

    def _grow(self, parent: _Dir, name: bytes, report: bool) -> None:
        """A new directory in the tree: watch it and what it holds by now."""
        try:
            entries = self._tree(parent.rel, parent.dev, parent.ino, name, _MASK, 1 | (2 if report else 0))
        except _Changed:
            self._stale = True  # moved while it was walked: place every watch again
            return
        except OSError as e:
            if e.errno in _GONE:
                return
            raise
        self._adopt(entries, parent, _join(parent.rel, name), report)  # (sets _stale for a misplaced one)

    def _reattach(self, d: _Dir, parent: _Dir, name: bytes) -> None:
        old = d.rel
        d.name, d.parent = name, parent
        parent.children[name] = d
        new = _join(parent.rel, name)
        for c in d.subtree():
            c.rel = new + c.rel[len(old):]
            c.live = True

    def _drop(self, d: _Dir, rm: bool = True) -> None:
        """Forget a subtree (and remove its kernel watches: moved out, their inodes are
        somewhere else now)."""
        if d.parent is not None and d.parent.children.get(d.name) is d:
            del d.parent.children[d.name]
        nodes = list(d.subtree())
        gone = [c.wd for c in nodes if self._dirs.pop(c.wd, None) is c]
        for c in nodes:  # parent <-> children are cycles: freed now, not at the next GC
            c.parent, c.children = None, {}
        if rm:
            self._rm(gone)
        self._give(len(gone))

    def _give(self, n: int) -> None:
        if n:
            self._held -= n
            if self._budget is not None:
                self._budget.give(n)

    def _top_gone(self, kind: str) -> None:
        # (after an overflow too: the caller must learn that the watch is over)
        self._pending.append((kind, self._show(self._real), self._leaf is None, 0))
        self._end(None)

    def _forget_all(self) -> None:
        self._rm(list(self._dirs) + list(self._above))
        self._give(self._held)
        self._unlink()
        self._dirs.clear()
        self._above.clear()
        self._moving.clear()
        self._top = None

    def _rebuild(self) -> None:
        """The kernel dropped events (or the table cannot be trusted): say so, and place
        every watch again from the top."""
        self._stale = False
        self._push("overflow", self._real, False, 0)
        self._forget_all()
        try:
            self._setup()
        except OSError as e:
            self._end(e)

    def _unlink(self) -> None:
        """Break the table's parent <-> children cycles (10k directories: freed at once,
        not whenever the cyclic GC next runs)."""
        for d in self._dirs.values():
            d.parent, d.children = None, {}
        for d in self._moving.values():
            for c in d.subtree():
                c.parent, c.children = None, {}

    def _end(self, error: OSError | None) -> None:
        self.ended = True
        self.error = error
        self._release()

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # every kernel watch of the instance goes with it
        self._unlink()
        self._dirs.clear()
        self._above.clear()
        self._give(self._held)

    # -- the iterator ----------------------------------------------------------------------

    def fileno(self) -> int:
        return self._fd

    def next(self, timeout: float | None = None) -> WatchEvent:
        """The next event; ``TimeoutError`` after ``timeout`` seconds without one;
        ``StopIteration`` once the watch has ended (its top was deleted or moved, or it was
        closed; an error that ended it is raised once first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            if self.ended or self._fd < 0:
                err, self.error = self.error, None
                if err is not None:
                    raise err
                raise StopIteration
            if self.read():
                for _ in range(64):  # what the kernel still holds is dropped too (and its own overflow)
                    if not (self._overflowed and self.read()):
                        break
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0 and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"no watch event within {timeout:g} s")
            p = select.poll()
            p.register(self._fd, select.POLLIN)
            p.poll(None if left is None else left * 1000)
        kind, path, is_dir, cookie = self.take(1)[0]
        return WatchEvent(kind, path if self.as_bytes else os.fsdecode(path), is_dir, cookie)

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        return self.next()

    def close(self) -> None:
        """Remove every kernel watch (closing the inotify instance)."""
        self.ended = True
        self._pending.clear()
        self._release()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<beneathd.Watch {self._caller!r}{' closed' if self.closed else ''}>"

