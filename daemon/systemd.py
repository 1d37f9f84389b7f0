"""systemd glue without libsystemd: socket activation (sd_listen_fds) and sd_notify.

``listen_fds()`` takes the listening sockets systemd passed (``LISTEN_FDS``/``LISTEN_PID``,
fds from 3), checks each is a listening ``AF_UNIX`` ``SOCK_SEQPACKET`` socket, and unsets
the variables so no child inherits them. ``notify()`` sends one datagram such as
``"READY=1"``, ``"STATUS=serving"`` or ``"STOPPING=1"`` to ``NOTIFY_SOCKET`` (a path, or
an abstract name written with a leading ``@``); it is a no-op outside systemd.
"""

from __future__ import annotations

import os
import socket

__all__ = ["SD_LISTEN_FDS_START", "listen_fds", "notify", "ActivationError"]

SD_LISTEN_FDS_START = 3


class ActivationError(RuntimeError):
    """systemd passed something the daemon cannot serve on (wrong type, not listening)."""


def listen_fds(*, unset_environment: bool = True) -> list[socket.socket]:
    """The sockets systemd passed to this process, as ``socket.socket`` objects.

    Returns ``[]`` when the process was not socket-activated (no ``LISTEN_FDS`` or
    ``LISTEN_PID`` is another process). Raises ``ActivationError`` when a passed fd is
    not a listening ``AF_UNIX`` ``SOCK_SEQPACKET`` socket (e.g. ``ListenStream=`` by
    mistake), so the unit fails with a clear message instead of serving garbage.
    Each fd gets ``FD_CLOEXEC``.
    """
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if unset_environment:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if not pid or not count:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        n = int(count)
    except ValueError:
        return []
    if n <= 0:
        return []
    socks: list[socket.socket] = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        os.set_inheritable(fd, False)
        try:
            s = socket.socket(fileno=fd)  # family and type are read from the fd
        except OSError as e:
            raise ActivationError(f"fd {fd} from systemd is not a socket: {e.strerror}") from None
        if s.family != socket.AF_UNIX or s.type != socket.SOCK_SEQPACKET:
            kind = f"{s.family.name}/{s.type.name}"
            s.detach()
            raise ActivationError(
                f"fd {fd} from systemd is {kind}, need AF_UNIX/SOCK_SEQPACKET "
                "(use ListenSequentialPacket= in the .socket unit)")
        if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            s.detach()
            raise ActivationError(f"fd {fd} from systemd is not a listening socket (Accept=yes?)")
        socks.append(s)
    return socks


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=serving /srv/p1"``) to ``NOTIFY_SOCKET``.

    Returns True if sent, False when ``NOTIFY_SOCKET`` is unset. Errors sending are
    swallowed (False): a lost notification must never take the daemon down; with
    ``Type=notify`` systemd's start timeout reports it.
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        target: str | bytes = b"\0" + os.fsencode(addr[1:])
    elif addr[0] == "/":
        target = addr
    else:
        return False  # vsock:// and the like: not for a daemon with PrivateNetwork
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), target)
        return True
    except OSError:
        return False
