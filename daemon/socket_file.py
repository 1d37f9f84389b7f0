"""The socket file: bound at a staging name, published by a privileged reaper, always removed.

The daemon binds and listens beside ``--socket`` and only the *reaper* (a forked child that
keeps the original privileges) renames it into place, once the daemon has dropped to
``--user`` and confined itself: a socket file that exists is connectable and served by the
unprivileged daemon. The reaper also removes the file (and an empty default journal
directory) when the daemon exits, even by SIGKILL, which the daemon itself may no longer be
allowed to do.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat

from .startup import Fatal

__all__ = ["bind", "is_our_socket", "start_reaper", "publish", "stop_reaper"]


def staging_name(path: str) -> str:
    """Where to bind before publishing at ``path`` (``path`` itself if the longer name
    would not fit ``sun_path``)."""
    staged = os.path.join(os.path.dirname(path) or ".", f".{os.getpid()}.beneathd-bind")
    return staged if len(os.fsencode(staged)) < 108 else path


def bind(path: str) -> tuple[socket.socket, tuple[int, int], str]:
    """Bind and listen at a staging name (see :func:`staging_name`); returns the socket,
    its file's (dev, ino) and the name it is bound at."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise Fatal(f"{path}: exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale
        else:
            raise Fatal(f"{path}: another daemon is listening there")
        finally:
            probe.close()
    staged = staging_name(path)
    with contextlib.suppress(OSError):  # a socket left at our pid's name by a dead daemon
        if staged != path and stat.S_ISSOCK(os.lstat(staged).st_mode):
            os.unlink(staged)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o117)
    try:
        s.bind(staged)
    except OSError as e:
        s.close()
        raise Fatal(f"cannot bind {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(staged, 0o660)
    s.listen(128)
    st = os.lstat(staged)
    return s, (st.st_dev, st.st_ino), staged


def is_our_socket(path: str, ident: tuple[int, int]) -> bool:
    """``path`` is still the socket file we bound (same dev/ino)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident and stat.S_ISSOCK(st.st_mode)


def start_reaper(path: str, staged: str, ident: tuple[int, int],
                  journal_dir: str | None = None) -> tuple[int, int, int]:
    """Fork a process that keeps the original privileges and, told ``p``, renames the
    socket from ``staged`` to ``path`` (publishes it); told ``u`` or when we die, removes
    our socket file (whichever name, if still ours) and ``journal_dir`` if it is empty
    then (records left by a kill keep it)."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_IGN)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            keep = sorted({r1, w2})
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, 65536)
            while True:
                try:
                    what = os.read(r1, 1)
                except OSError:
                    what = b""
                if what != b"p":
                    break
                try:
                    if staged != path:
                        if not is_our_socket(staged, ident):
                            raise OSError("not ours")
                        os.rename(staged, path)
                    os.write(w2, b"P")
                except OSError:
                    os.write(w2, b"E")
            for p in {path, staged}:
                try:
                    if is_our_socket(p, ident):
                        os.unlink(p)
                except OSError:
                    pass
            if journal_dir is not None:
                try:
                    os.rmdir(journal_dir)
                except OSError:
                    pass
            try:
                os.write(w2, b"k")
            except OSError:
                pass
        finally:
            os._exit(0)
    os.close(r1)
    os.close(w2)
    os.set_inheritable(w1, False)
    os.set_inheritable(r2, False)
    return pid, w1, r2


def publish(reaper: tuple[int, int, int], path: str) -> None:
    """Have the reaper rename the socket to its real name; from then on it is connectable."""
    _, w, r = reaper
    os.write(w, b"p")
    ready, _, _ = select.select([r], [], [], 10.0)
    if not ready or os.read(r, 1) != b"P":
        raise Fatal(f"cannot publish the socket at {path}")


def stop_reaper(reaper: tuple[int, int, int] | None) -> None:
    if reaper is None:
        return
    pid, w, r = reaper
    try:
        os.write(w, b"u")
        ready, _, _ = select.select([r], [], [], 5.0)
        if ready:
            os.read(r, 1)
    except OSError:
        pass
    finally:
        os.close(w)
        os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
