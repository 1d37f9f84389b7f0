"""Landlock self-confinement: after this, the process can touch only the project root.

`confine()` is called once by the CLI, in the main thread, after every import, after the
root is opened and privileges are dropped, and before ``trio.run`` (Landlock is per thread
and inherited only by threads created later; a lazy import after it fails).

What the daemon needs at runtime, found by tracing a confined daemon (see
tests/test_landlock.py): only the root. Landlock restricts *opening* and *changing*
files, never path lookup, stat, or fds opened before confinement, so:

* the root's ``O_PATH`` dirfd, the listening socket and stdio keep working;
* ``linkat(AT_FDCWD, "/proc/self/fd/N", dfd, leaf, AT_SYMLINK_FOLLOW)`` (how an
  ``O_TMPFILE`` is published) is checked against the *target* file and directory, both
  beneath the root: no rule for ``/proc`` is needed;
* sending to a path-based ``NOTIFY_SOCKET`` is a ``sendto``, not an open: allowed (the
  ruleset handles no socket scopes, so an abstract ``@`` socket is allowed as well);
* trio (epoll, socketpair wakeup, threads) and msgpack open no file; ``/etc/localtime``
  is read lazily by glibc on the first ``localtime()``, so it is primed here first.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Sequence

__all__ = ["confine", "handled_access", "abi_version", "ACCESS"]

# include/uapi/linux/landlock.h
ACCESS: dict[str, int] = {
    "EXECUTE": 1 << 0,
    "WRITE_FILE": 1 << 1,
    "READ_FILE": 1 << 2,
    "READ_DIR": 1 << 3,
    "REMOVE_DIR": 1 << 4,
    "REMOVE_FILE": 1 << 5,
    "MAKE_CHAR": 1 << 6,
    "MAKE_DIR": 1 << 7,
    "MAKE_REG": 1 << 8,
    "MAKE_SOCK": 1 << 9,
    "MAKE_FIFO": 1 << 10,
    "MAKE_BLOCK": 1 << 11,
    "MAKE_SYM": 1 << 12,
    "REFER": 1 << 13,       # ABI 2
    "TRUNCATE": 1 << 14,    # ABI 3
    "IOCTL_DEV": 1 << 15,   # ABI 5
}
_A = ACCESS
_ABI1 = (1 << 13) - 1
_ALL_BY_ABI = {1: _ABI1, 2: _ABI1 | _A["REFER"], 3: _ABI1 | _A["REFER"] | _A["TRUNCATE"]}
_ALL_BY_ABI[4] = _ALL_BY_ABI[3]          # ABI 4 added network rules only
_ALL_BY_ABI[5] = _ALL_BY_ABI[4] | _A["IOCTL_DEV"]
# ABI 6 (scopes) and 7 (audit flags) add no filesystem right.

_READ = _A["READ_FILE"] | _A["READ_DIR"]
# Everything the operations need beneath the root. Landlock checks a rename or a link of
# an existing node against the right to make one of its kind in the destination, so
# MAKE_SOCK, MAKE_CHAR and MAKE_BLOCK are granted too, or renaming or linking a socket or
# a device node already in the tree would fail (EACCES) where os.rename/os.link as the
# project user succeed. They let the daemon make no new one: it binds no socket there,
# the API refuses device nodes (mkfifo makes FIFOs only, cp skips sockets and devices),
# and making a device needs CAP_MKNOD, which a daemon never serving as root lacks.
# EXECUTE and IOCTL_DEV are handled (so denied) and never granted: nothing needs them.
_ROOT_RW = (
    _READ | _A["WRITE_FILE"] | _A["REMOVE_DIR"] | _A["REMOVE_FILE"] | _A["MAKE_DIR"]
    | _A["MAKE_REG"] | _A["MAKE_FIFO"] | _A["MAKE_SYM"] | _A["MAKE_SOCK"] | _A["MAKE_CHAR"]
    | _A["MAKE_BLOCK"] | _A["REFER"] | _A["TRUNCATE"]
)


def handled_access(abi: int) -> int:
    """All filesystem rights a kernel with Landlock ABI ``abi`` knows (>= 1)."""
    if abi < 1:
        raise ValueError(f"Landlock ABI {abi}")
    return _ALL_BY_ABI[min(abi, max(_ALL_BY_ABI))]


def abi_version() -> int:
    """The kernel's Landlock ABI version, or ``-errno`` (ENOSYS, EOPNOTSUPP: none)."""
    from beneathd._native import lib

    return int(lib.bn_landlock_abi())


def _names(mask: int) -> str:
    return ",".join(k.lower() for k, v in ACCESS.items() if mask & v) or "none"


def _show(p: str | int) -> str:
    if isinstance(p, int):
        try:
            return os.readlink(f"/proc/self/fd/{p}")
        except OSError:
            return f"fd {p}"
    return p


def confine(
    root_path: str | int,
    *,
    extra_read: Sequence[str | int] = (),
    extra_rw: Sequence[str | int] = (),
    extra_remove: Sequence[str | int] = (),
    _abi: int | None = None,
) -> str:
    """Restrict this process's filesystem access to ``root_path`` (plus the extras).

    ``root_path`` (and each extra) is a path or an already open fd. Pass the daemon's
    root dirfd (``Root.fileno()``): it names exactly the directory being served, and it
    works after privileges were dropped even when the path is not searchable by the
    daemon's user. An fd is used, never closed.

    Every right the kernel's ABI knows is handled; beneath the root the daemon gets read,
    write, create (dir, file, fifo, symlink; socket and device nodes, which a rename or
    link of an existing one needs), remove, refer and truncate; ``extra_read``
    paths get read only, ``extra_rw`` the same rights as the root, ``extra_remove``
    directories only the right to unlink files in them. Returns a log line.
    A kernel without Landlock (or with it disabled) returns a warning line and nothing
    is applied; so does ABI 1, whose implicit ban on cross-directory rename/link would
    break ``rename``/``move``. Any other failure raises ``OSError``: the daemon fails closed.
    Must run in the main thread before any other thread exists.
    """
    from beneathd._native import lib

    abi = abi_version() if _abi is None else _abi
    if abi < 0:
        e = -abi
        if e in (errno.ENOSYS, errno.EOPNOTSUPP):
            why = "not built into this kernel" if e == errno.ENOSYS else "disabled at boot"
            return f"warning: Landlock unavailable ({os.strerror(e)}: {why}); running unconfined"
        raise OSError(e, f"landlock_create_ruleset(VERSION): {os.strerror(e)}")
    if abi < 2:
        return ("warning: Landlock ABI 1 always denies cross-directory rename/link "
                "(no REFER right); running unconfined")

    if threading.current_thread() is not threading.main_thread() or threading.active_count() != 1:
        raise RuntimeError("confine() must run in the main thread before any other thread exists")
    time.localtime()  # glibc reads /etc/localtime on first use: do it before the lock

    handled = handled_access(abi)
    grants: list[tuple[str | int, int]] = [(root_path, _ROOT_RW & handled)]
    grants += [(p, _ROOT_RW & handled) for p in extra_rw]
    grants += [(p, _READ & handled) for p in extra_read]
    grants += [(p, _A["REMOVE_FILE"] & handled) for p in extra_remove]

    ruleset = lib.bn_landlock_create(handled)
    if ruleset < 0:
        raise OSError(-ruleset, f"landlock_create_ruleset: {os.strerror(-ruleset)}")
    try:
        for path, access in grants:
            fd = path if isinstance(path, int) else os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    # a file rule may carry only file rights
                    access &= _A["READ_FILE"] | _A["WRITE_FILE"] | _A["TRUNCATE"] | _A["IOCTL_DEV"]
                r = lib.bn_landlock_allow(ruleset, fd, access)
            finally:
                if not isinstance(path, int):
                    os.close(fd)
            if r < 0:
                raise OSError(-r, f"landlock_add_rule: {os.strerror(-r)}", path)
        r = lib.bn_landlock_restrict(ruleset)
        if r < 0:
            raise OSError(-r, f"landlock_restrict_self: {os.strerror(-r)}")
    finally:
        os.close(ruleset)
    extras = "".join(f"; read-only {_show(p)}" for p in extra_read)
    extras += "".join(f"; read-write {_show(p)}" for p in extra_rw)
    extras += "".join(f"; remove_file only {_show(p)}" for p in extra_remove)
    return (f"Landlock ABI {abi} applied: filesystem access limited to {_show(root_path)} "
            f"({_names(_ROOT_RW & handled)}){extras}; denied elsewhere: {_names(handled)}")
