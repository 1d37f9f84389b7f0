"""The log of refused escapes: one line per peer and path per window, then a count.

An escape attempt (a call whose path resolves, or tries to resolve, outside the root:
``EscapeError``) is a security event: a bug in a backend, or someone probing it. The
daemon refuses it either way; this module makes the operator see it, without letting a
peer that repeats it fill the journal:

* the first escape of a (peer pid, peer uid, path) in a window is logged at once::

    beneathd: escape refused: pid=4242 uid=1000 gid=1000 method=stat path='../../etc/passwd': path escapes the root

* the same again within the window (``--escape-log-window``, 60 s) is counted, not logged;
  when the window has passed, one line gives the count (none if there was nothing more)::

    beneathd: escape refused: pid=4242 uid=1000 gid=1000 path='../../etc/passwd': 41 more in 60 s, not logged

* at most ``max_pairs`` (peer, path) pairs are followed at once (a peer that makes up a new
  path each time cannot grow the table): beyond them, escapes are counted together and
  summed up in one line when their window passes.

The path is the caller's own (as it sent it; two for two-path methods: ``path2=``), shown
as a quoted literal with control characters and bytes that are not UTF-8 escaped (a peer
cannot forge a log line) and cut at ``MAX_SHOWN`` bytes. The root's absolute path never
appears: nothing here knows it.

Windows are kept on an injectable clock (``time.monotonic`` by default), so tests move time
on instead of sleeping. Escapes come from the loop and from worker threads (long calls),
hence the lock; they are rare, so it costs nothing on the calls that do not escape.
Summaries are written by :meth:`EscapeLog.flush`, which every :meth:`~EscapeLog.refused`
calls first and the server calls every few seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["EscapeLog", "shown", "MAX_SHOWN"]

#: a path is shown up to this many bytes (then its length is said)
MAX_SHOWN = 256


def shown(path: Any) -> str:
    """A caller's path for a log line: a quoted literal, controls and non-UTF-8 bytes escaped."""
    if isinstance(path, str):
        b = path.encode("utf-8", "surrogateescape")
    elif isinstance(path, (bytes, bytearray, memoryview)):
        b = bytes(path)
    else:
        return repr(path)[:MAX_SHOWN]
    tail = f"...({len(b)} bytes)" if len(b) > MAX_SHOWN else ""
    return repr(b[:MAX_SHOWN].decode("utf-8", "backslashreplace")) + tail


def _key(path: Any) -> bytes:
    if isinstance(path, bytes):
        return path
    if isinstance(path, str):
        return path.encode("utf-8", "surrogateescape")
    return repr(path).encode()  # (never raises: a log must not fail the reply it goes with)


class _Pair:
    __slots__ = ("since", "more", "who", "paths")

    def __init__(self, since: float, who: str, paths: str) -> None:
        self.since = since
        #: escapes of this pair since ``since`` that were not logged
        self.more = 0
        self.who = who
        self.paths = paths


class EscapeLog:
    """Refused escapes, rate-limited per (peer, path) (see the module docstring)."""

    def __init__(self, log: Callable[[str], None], window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_pairs: int = 1024) -> None:
        self.log = log
        self.window = window
        self.clock = clock
        self.max_pairs = max_pairs
        self._lock = threading.Lock()
        #: (pid, uid, paths) -> its window; in the order the windows began (so the oldest
        #: is first: a flush stops at the first that has not passed)
        self._pairs: dict[tuple[int, int, tuple[bytes, ...]], _Pair] = {}
        #: escapes of pairs beyond max_pairs, not logged, and when the first of them came
        self._over = 0
        self._over_since = 0.0

    def refused(self, peer: Any, method: str, exc: OSError) -> None:
        """Note an escape ``peer`` (a ``PeerCred``) attempted with ``method``: log it, or count it."""
        names = [p for p in (exc.filename, exc.filename2) if p is not None]
        key = (peer.pid, peer.uid, tuple(map(_key, names)))
        with self._lock:
            now = self.clock()
            self._flush(now)
            pair = self._pairs.get(key)
            if pair is not None:
                pair.more += 1
                return
            if len(self._pairs) >= self.max_pairs:
                if not self._over:
                    self._over_since = now
                self._over += 1
                return
            paths = " ".join(f"{'path' if i == 0 else 'path2'}={shown(p)}" for i, p in enumerate(names))
            who = f"pid={peer.pid} uid={peer.uid} gid={peer.gid}"
            self._pairs[key] = _Pair(now, who, paths or "path=?")
            why = exc.strerror or "path escapes the root"
            self.log(f"beneathd: escape refused: {who} method={method} {paths or 'path=?'}: {why}")

    def flush(self) -> None:
        """Close the windows that have passed: a count of what each did not log."""
        with self._lock:
            self._flush(self.clock())

    def _flush(self, now: float) -> None:
        window = self.window
        pairs = self._pairs
        while pairs:
            key = next(iter(pairs))
            pair = pairs[key]
            if now - pair.since < window:
                break
            del pairs[key]
            if pair.more:
                self.log(f"beneathd: escape refused: {pair.who} {pair.paths}: {pair.more} more in "
                         f"{window:g} s, not logged")
        if self._over and now - self._over_since >= window:
            self.log(f"beneathd: escape refused: {self._over} more from other peers or paths in {window:g} s, "
                     f"not logged (more than {self.max_pairs} pairs at once)")
            self._over = 0

    @property
    def pending(self) -> int:
        """(peer, path) pairs whose window is open."""
        return len(self._pairs)
