"""``beneathd --root DIR --socket PATH [...]``: open the root, bind, drop privileges, serve.

Order of events (each step fails closed with a one-line message and exit status 1 or 2):

1. parse the flags; take the listening socket from systemd (``LISTEN_FDS``) when
   ``--socket`` is absent, else bind and listen on a staging name beside ``--socket``
   (mode 0660; a stale socket file nobody listens on at ``--socket`` is replaced, a live
   one is an error); the reaper renames it to ``--socket`` only at step 8, so a socket
   file that exists is one a client can connect to, served by a daemon already dropped
   and confined;
2. started as root: ``--user`` is required; the socket file is chowned to that user and
   its primary group;
3. open the ``Root`` (fails closed without openat2); find or make the crash journal's
   directory (``--state-dir``, ``$STATE_DIRECTORY``, or a default under ``/run``);
4. when the daemon made the socket file, fork a tiny *reaper* that keeps the original
   privileges and only removes that socket file (same dev/ino) when the daemon exits, even
   by SIGKILL; after the drop and Landlock the daemon itself may not be allowed to;
5. drop to ``--user`` (setgroups([]), setgid, setuid);
6. take the crash journal (daemon/journal.py): remove the temporary names a killed
   predecessor left, log them;
7. confine with Landlock (if the kernel has it): the root (and unlinking the journal's file);
8. ``trio.run``: serve, ``READY=1``; SIGTERM/SIGINT or ``--idle-exit`` end it cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import stat
import sys
import time
from typing import Any

import trio

from .auth import Policy, drop_privileges, resolve_user
from .server import Server, ServerConfig

# Imported plainly: a module that fails to import stops the daemon (fail closed); a broken
# landlock.py must never let it run unconfined.
from . import landlock as _landlock
from . import systemd as _systemd

__all__ = ["main", "build_parser"]

PROG = "beneathd"


class Fatal(Exception):
    pass


def _log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve file operations strictly beneath one root.")
    p.add_argument("--root", required=True, help="the project root directory")
    p.add_argument("--socket", help="the Unix socket path to bind (omit under systemd socket activation)")
    p.add_argument("--allow-uid", type=int, action="append", default=[], metavar="N",
                   help="a uid that may call (repeatable; default: the daemon's own uid)")
    p.add_argument("--allow-gid", type=int, action="append", default=[], metavar="N",
                   help="a gid (primary or supplementary) whose members may call")
    p.add_argument("--read-only-uid", type=int, action="append", default=[], metavar="N",
                   help="a uid that may call only non-mutating methods")
    p.add_argument("--read-only-gid", type=int, action="append", default=[], metavar="N",
                   help="a gid whose members may call only non-mutating methods")
    p.add_argument("--user", help="the user to run as (required when started as root)")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit (status 0) after this long with no connection")
    p.add_argument("--no-xdev", action="store_true", help="refuse to cross mount points inside the root")
    p.add_argument("--state-dir", metavar="DIR",
                   help="private directory (outside the root) for the crash journal; default: "
                        "$STATE_DIRECTORY under systemd, else /run/beneathd/journal/DEV-INO when "
                        "started as root, else $XDG_RUNTIME_DIR/beneathd/journal/DEV-INO")
    p.add_argument("--no-journal", action="store_true",
                   help="keep no crash journal (a kill while replacing a file may leave "
                        "its .NAME.beneathd-XXXX temporary)")
    p.add_argument("--no-landlock", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-connections", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--max-inflight", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--idle-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    p.add_argument("--send-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=4, help=argparse.SUPPRESS)
    return p


# -- the crash journal's directory -----------------------------------------------------------


def _journal_dir(args: argparse.Namespace, root_fd: int,
                 target: tuple[int, int] | None) -> tuple[str | None, bool]:
    """(the journal directory to take after the privilege drop, whether the operator named
    it).  A default one is made (0700, owned by the target user) if missing; None with a
    logged warning when there is none to be had.  A named one that cannot be used is fatal."""
    if args.no_journal:
        return None, False
    explicit = args.state_dir or (os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None)
    if explicit:
        path = os.path.abspath(explicit)
    else:
        st = os.fstat(root_fd)
        key = f"{st.st_dev}-{st.st_ino}"
        if os.geteuid() == 0:
            base = "/run/beneathd/journal"
        elif os.environ.get("XDG_RUNTIME_DIR"):
            base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "beneathd", "journal")
        else:
            _log("warning: no --state-dir (and no $STATE_DIRECTORY or $XDG_RUNTIME_DIR): no crash "
                 "journal; a kill while replacing a file may leave its temporary name")
            return None, False
        path = os.path.join(base, key)
    try:
        if not explicit:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
            made = True
        except FileExistsError:
            made = False
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{path}: not a directory")
        if os.geteuid() == 0 and target is not None and (made or not explicit):
            os.chown(path, *target)
            os.chmod(path, 0o700)
    except OSError as e:
        _journal_unusable(path, bool(explicit), f"cannot make it: {e.strerror or e}")
        return None, False
    return path, bool(explicit)


def _journal_unusable(path: str, explicit: bool, why: str) -> None:
    """A journal directory the operator named must work (fatal); a default one may not
    (a warning, and the daemon runs without)."""
    if explicit:
        raise Fatal(f"state dir {path}: {why}")
    _log(f"warning: crash journal {path}: {why}; running without")


def _take_journal(root: Any, path: str, explicit: bool) -> None:
    """After the drop: lock the journal, undo and log what a killed predecessor left."""
    from .journal import JournalBusy

    try:
        done = root.attach_journal(path)
    except JournalBusy:
        _journal_unusable(path, explicit, "held by another beneathd (one daemon per journal)")
        return
    except OSError as e:
        _journal_unusable(path, explicit, f"cannot take it: {e.strerror or e}")
        return
    for rel, outcome in done:
        _log(f"journal: {os.fsdecode(rel)!r} (a temporary left by a killed daemon): {outcome}")


# -- the socket -------------------------------------------------------------------------------


def _staging_name(path: str) -> str:
    """Where to bind before publishing at ``path`` (``path`` itself if the longer name
    would not fit ``sun_path``)."""
    staged = os.path.join(os.path.dirname(path) or ".", f".{os.getpid()}.beneathd-bind")
    return staged if len(os.fsencode(staged)) < 108 else path


def _bind(path: str) -> tuple[socket.socket, tuple[int, int], str]:
    """Bind and listen at a staging name (see :func:`_staging_name`); returns the socket,
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
    staged = _staging_name(path)
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


def _is_our_socket(path: str, ident: tuple[int, int]) -> bool:
    """``path`` is still the socket file we bound (same dev/ino)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident and stat.S_ISSOCK(st.st_mode)


def _start_reaper(path: str, staged: str, ident: tuple[int, int],
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
                        if not _is_our_socket(staged, ident):
                            raise OSError("not ours")
                        os.rename(staged, path)
                    os.write(w2, b"P")
                except OSError:
                    os.write(w2, b"E")
            for p in {path, staged}:
                try:
                    if _is_our_socket(p, ident):
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


def _publish(reaper: tuple[int, int, int], path: str) -> None:
    """Have the reaper rename the socket to its real name; from then on it is connectable."""
    _, w, r = reaper
    os.write(w, b"p")
    ready, _, _ = select.select([r], [], [], 10.0)
    if not ready or os.read(r, 1) != b"P":
        raise Fatal(f"cannot publish the socket at {path}")


def _stop_reaper(reaper: tuple[int, int, int] | None) -> None:
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


# -- serving ----------------------------------------------------------------------------------


def _notify(state: str) -> None:
    try:
        _systemd.notify(state)
    except Exception:
        pass


async def _run(server: Server, idle_exit: float | None) -> None:
    async with trio.open_nursery() as nursery:

        async def signals(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as it:
                task_status.started()
                if _early:  # arrived during startup, before this receiver existed
                    _log(f"{signal.Signals(_early[0]).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return
                async for sig in it:
                    _log(f"{signal.Signals(sig).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return

        async def idle() -> None:
            assert idle_exit is not None
            while True:
                await trio.sleep(min(1.0, max(idle_exit / 4, 0.05)))
                if server.connections == 0 and time.monotonic() - server.last_activity >= idle_exit:
                    _log(f"idle for {idle_exit:g}s: exiting")
                    nursery.cancel_scope.cancel()
                    return

        await nursery.start(signals)
        await nursery.start(server.serve)
        if idle_exit is not None:
            nursery.start_soon(idle)
        _notify("READY=1")


_early: list[int] = []


def _early_handler(sig: int, frame: Any) -> None:
    _early.append(sig)


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM during startup (the socket is connectable before trio runs) must still
    # end in a clean shutdown: note it now, act on it once serving has started.
    signal.signal(signal.SIGTERM, _early_handler)
    signal.signal(signal.SIGINT, _early_handler)
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except Fatal as e:
        _log(str(e))
        return 1
    except KeyboardInterrupt:
        return 130


def _main(args: argparse.Namespace) -> int:
    from . import Root  # the core; imported here so a broken core still gives a message

    euid = os.geteuid()
    target: tuple[int, int] | None = None
    if args.user is not None:
        try:
            target = resolve_user(args.user)
        except LookupError as e:
            raise Fatal(str(e)) from None
        if target[0] == 0:
            raise Fatal("--user must not be root: beneathd never serves as root")
        if euid != 0 and target[0] != euid:
            raise Fatal(f"--user {args.user} needs the daemon to be started as root")
    elif euid == 0:
        raise Fatal("started as root without --user: refusing to serve as root "
                    "(pass --user NAME, the project's user)")

    listener: socket.socket | None = None
    made: tuple[int, int] | None = None
    staged = ""
    if args.socket is None:
        try:
            socks: list[Any] = _systemd.listen_fds()
        except Exception as e:
            raise Fatal(str(e)) from None
        if not socks:
            raise Fatal("no --socket given and no socket passed by systemd (LISTEN_FDS)")
        listener = socks[0]
        for extra in socks[1:]:
            extra.close()
    else:
        listener, made, staged = _bind(args.socket)
        if target is not None and euid == 0:
            os.chown(staged, target[0], target[1])

    reaper = None
    root = None
    try:
        try:
            root = Root(args.root, no_xdev=args.no_xdev)
        except OSError as e:
            raise Fatal(f"cannot open root {args.root}: {e.strerror or e}") from None
        except Exception as e:
            raise Fatal(f"cannot open root {args.root}: {e}") from None

        journal_dir, explicit_journal = _journal_dir(args, root.fileno(), target)
        if made is not None:
            # the default journal directory (under /run, root's) goes when the daemon does
            reaper = _start_reaper(args.socket, staged, made, None if explicit_journal else journal_dir)

        if target is not None and euid == 0:
            try:
                drop_privileges(*target)
            except Exception as e:
                raise Fatal(f"cannot drop privileges to {args.user}: {e}") from None
        if os.geteuid() == 0:  # belt and braces
            raise Fatal("refusing to serve as root")

        if journal_dir is not None:
            _take_journal(root, journal_dir, explicit_journal)  # (after the fork: a flock is shared)
        if not args.no_landlock:
            try:
                # the journal is mapped already; its directory gets only remove_file, for
                # discard_if_clean() at exit
                j = root.journal
                line = _landlock.confine(root.fileno(), extra_remove=[j.dirfd] if j is not None else [])
                if line:
                    _log(line)
            except Exception as e:
                raise Fatal(f"landlock: {e}") from None

        policy = Policy(set(args.allow_uid), set(args.allow_gid), set(args.read_only_uid), set(args.read_only_gid))
        cfg = ServerConfig(
            policy=policy,
            max_connections=args.max_connections,
            max_inflight=args.max_inflight,
            idle_timeout=args.idle_timeout,
            send_timeout=args.send_timeout,
            worker_threads=args.workers,
        )
        if reaper is not None:
            # only now does the socket file appear: whoever finds it can connect, and finds
            # the daemon dropped, confined and reaped-for (systemd's socket: it queues for us)
            _publish(reaper, args.socket)
        server = Server(root, listener, cfg)
        _log(f"serving {args.root} on {args.socket or 'the systemd socket'} as uid {os.geteuid()}")
        try:
            if not _early:
                trio.run(_run, server, args.idle_exit)
        finally:
            _notify("STOPPING=1")
        return 0
    finally:
        try:
            listener.close()
        except Exception:
            pass
        if root is not None and root.journal is not None:
            root.journal.discard_if_clean()  # an empty record file goes: the directory is empty
        if made is not None:
            try:  # when we still may; else the reaper does
                if _is_our_socket(args.socket, made):
                    os.unlink(args.socket)
            except OSError:
                pass
            _stop_reaper(reaper)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
