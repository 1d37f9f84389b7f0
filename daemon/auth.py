"""Peer checks (``SO_PEERCRED``) and the privilege drop."""

from __future__ import annotations

import os
import pwd
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["PeerCred", "Policy", "peer_cred", "drop_privileges", "resolve_user"]

_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"pid={self.pid} uid={self.uid} gid={self.gid}"


def peer_cred(sock: socket.socket) -> PeerCred:
    """The peer's pid/uid/gid at connect time, and its supplementary groups (if the kernel says)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    groups: tuple[int, ...] = ()
    try:
        graw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * 256)
        n = len(graw) // 4
        groups = struct.unpack(f"{n}I", graw[: 4 * n])
    except OSError:
        pass
    return PeerCred(pid, uid, gid, groups)


@dataclass
class Policy:
    """Who may call.  Empty allow lists mean: the daemon's own uid only."""

    allow_uids: set[int] = field(default_factory=set)
    allow_gids: set[int] = field(default_factory=set)
    ro_uids: set[int] = field(default_factory=set)
    ro_gids: set[int] = field(default_factory=set)

    def access(self, peer: PeerCred) -> str | None:
        """``"rw"``, ``"ro"`` or ``None`` (refused)."""
        allow_uids = self.allow_uids or ({os.geteuid()} if not self.allow_gids else set())
        gids = {peer.gid, *peer.groups}
        if peer.uid in allow_uids or gids & self.allow_gids:
            return "rw"
        if peer.uid in self.ro_uids or gids & self.ro_gids:
            return "ro"
        return None


def resolve_user(name: str) -> tuple[int, int]:
    """``(uid, gid)`` of a user name or numeric uid."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            uid = int(name)
            try:
                return uid, pwd.getpwuid(uid).pw_gid
            except KeyError:
                return uid, uid
        raise LookupError(f"no such user: {name!r}") from None
    return pw.pw_uid, pw.pw_gid


def drop_privileges(uid: int, gid: int) -> None:
    """setgroups([]), setgid, setuid - and check that root cannot be regained."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:  # pragma: no cover
            raise RuntimeError("privilege drop failed: could regain uid 0")
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise RuntimeError("privilege drop failed")
