"""Serving: ``trio.run`` of the server with signal handling, idle exit and sd_notify.

SIGTERM/SIGINT end the daemon cleanly at any time: one that arrives during startup (before
trio runs) is noted by :func:`note_early_signals`' handler and acted on as soon as serving
has begun.

Under systemd (``NOTIFY_SOCKET`` set) the daemon says ``READY=1`` with a first ``STATUS=``
line once it serves, then sends the line again whenever its counters changed, looked at
every ``STATUS_INTERVAL`` seconds (``systemctl status`` shows the latest):
``STATUS=serving: 2 connections (17 since start, 0 refused), 1234 calls, 5 errors, 1 escapes refused``
(:func:`status_text`; the same figures as the ``stats`` method).

With ``--follow-root`` the daemon looks at its root's path every ``follow_interval``
seconds: when the path no longer names the directory it holds (a volume restored from
backup, a new mount over it, the directory replaced), it logs it and exits with
:data:`EXIT_ROOT_REPLACED`, so that systemd (``Restart=on-failure``) starts it again on the
new directory.  It cannot reopen in place: Landlock's domain, fixed before serving, admits
only the old directory's tree, and no process can widen its own domain (nor an exec'd one).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Mapping

import trio

from . import systemd as _systemd
from .server import Server
from .startup import log

__all__ = ["note_early_signals", "early_signal", "notify", "run", "status_text", "STATUS_INTERVAL",
           "EXIT_ROOT_REPLACED"]

#: the exit status when --follow-root saw the root replaced (EX_TEMPFAIL: "start me again")
EXIT_ROOT_REPLACED = 75

#: seconds between looks at the counters for a new STATUS= line (sent only when it changed)
STATUS_INTERVAL = 5.0


def notify(state: str) -> None:
    try:
        _systemd.notify(state)
    except Exception:
        pass


def status_text(stats: Mapping[str, int]) -> str:
    """The ``STATUS=`` text for the server's counters (``Server.stats()``)."""
    return (f"serving: {stats['connections']} connections ({stats['connections_total']} since start, "
            f"{stats['peers_refused']} refused), {stats['calls']} calls, {stats['errors']} errors, "
            f"{stats['escapes']} escapes refused")


async def _status(server: Server, last: str, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        line = status_text(server.stats())
        if line != last:
            notify(f"STATUS={line}")
            last = line


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


async def _follow_root(server: Server, path: str, interval: float) -> str:
    """Return (why) once ``path`` stops naming the directory the server holds."""
    held = _identity(os.fstat(server.root.fileno()))
    while True:
        await trio.sleep(interval)
        try:
            now = _identity(os.stat(path))
        except OSError as e:
            return f"{path} cannot be looked up ({e.strerror})"
        if now != held:
            return (f"{path} is now another directory (device {now[0]}, inode {now[1]}; "
                    f"served: device {held[0]}, inode {held[1]})")


async def run(server: Server, idle_exit: float | None, status_interval: float = STATUS_INTERVAL,
              follow_root: tuple[str, float] | None = None) -> int:
    """Serve until a signal, the idle exit or (``follow_root``: path, interval) the root
    replaced; the exit status (0, or :data:`EXIT_ROOT_REPLACED`)."""
    status = 0
    async with trio.open_nursery() as nursery:

        async def follow() -> None:
            nonlocal status
            assert follow_root is not None
            why = await _follow_root(server, *follow_root)
            log(f"--follow-root: {why}: exiting ({EXIT_ROOT_REPLACED}) to be started again on it")
            status = EXIT_ROOT_REPLACED
            nursery.cancel_scope.cancel()

        async def signals(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as it:
                task_status.started()
                if _early:  # arrived during startup, before this receiver existed
                    log(f"{signal.Signals(_early[0]).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return
                async for sig in it:
                    log(f"{signal.Signals(sig).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return

        async def idle() -> None:
            assert idle_exit is not None
            while True:
                await trio.sleep(min(1.0, max(idle_exit / 4, 0.05)))
                if server.connections == 0 and time.monotonic() - server.last_activity >= idle_exit:
                    log(f"idle for {idle_exit:g}s: exiting")
                    nursery.cancel_scope.cancel()
                    return

        await nursery.start(signals)
        await nursery.start(server.serve)
        if idle_exit is not None:
            nursery.start_soon(idle)
        line = status_text(server.stats())
        notify(f"READY=1\nSTATUS={line}")
        if os.environ.get("NOTIFY_SOCKET"):  # (no wakeups for it outside systemd)
            nursery.start_soon(_status, server, line, status_interval)
        if follow_root is not None:
            nursery.start_soon(follow)
    return status


_early: list[int] = []


def _early_handler(sig: int, frame: Any) -> None:
    _early.append(sig)


def note_early_signals() -> None:
    """Until trio's receiver exists, remember a SIGTERM/SIGINT instead of dying mid-step."""
    signal.signal(signal.SIGTERM, _early_handler)
    signal.signal(signal.SIGINT, _early_handler)


def early_signal() -> bool:
    return bool(_early)
