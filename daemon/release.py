"""Closing the fds of replaced big files off the caller's path.

When ``write_file``, ``copy_file`` or an atomic writer replaces a big regular file, the
rename drops the old file's last name, and its last reference frees its pages and blocks:
about a second per GiB on ext4 here, inside the rename, where the caller waits for it (a
plain ``open(path, "wb")`` pays the same in its ``O_TRUNC``). The native code keeps such a
file open (``BN_AW_HOLD_OLD``: an ``O_PATH`` fd, from ``BN_HOLD_BYTES`` up) so that the
freeing happens in the close, and this module does the close in a background thread, after
the call has returned (the daemon has answered). What a caller can see: for a moment after
the call, ``df`` still counts the old file's blocks.

At most :data:`MAX_PENDING` closes wait; beyond that the caller closes its own (a burst of
big replaces cannot keep unbounded freed space in use). :func:`settle` waits until none is
pending (tests that count fds or free space; benchmarks between samples).
"""

from __future__ import annotations

import os
import queue
import threading

#: held fds waiting for the closer; more are closed by the caller itself
MAX_PENDING = 8

_lock = threading.Lock()
_idle = threading.Condition(_lock)
_pending = 0
_queue: queue.SimpleQueue[int] = queue.SimpleQueue()
_thread: threading.Thread | None = None
#: fds handed over since the start (tests see the mechanism used)
handed = 0


def release(fd: int) -> None:
    """Close ``fd`` (a held replaced file; negative: nothing held) soon, not here."""
    global _pending, _thread, handed
    if fd < 0:
        return
    with _lock:
        handed += 1
        inline = _pending >= MAX_PENDING
        if not inline:
            _pending += 1
            if _thread is None or not _thread.is_alive():
                _thread = threading.Thread(target=_run, name="beneathd-release", daemon=True)
                _thread.start()
    if inline:
        os.close(fd)
    else:
        _queue.put(fd)


def settle(timeout: float | None = None) -> bool:
    """Wait until every handed-over fd is closed; False if ``timeout`` ran out first."""
    with _idle:
        return _idle.wait_for(lambda: _pending == 0, timeout)


def _run() -> None:
    global _pending
    while True:
        fd = _queue.get()
        try:
            os.close(fd)
        except OSError:
            pass
        with _idle:
            _pending -= 1
            if _pending == 0:
                _idle.notify_all()


def _after_fork() -> None:
    """A forked child has no closer thread; what the parent had queued is its own to close."""
    global _lock, _idle, _pending, _queue, _thread
    _lock = threading.Lock()
    _idle = threading.Condition(_lock)
    _pending = 0
    _queue = queue.SimpleQueue()
    _thread = None


os.register_at_fork(after_in_child=_after_fork)
