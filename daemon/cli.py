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

This file parses the flags and runs the steps in that order; each step's logic is in its
own module: the socket file and its reaper (``socket_file.py``: 1, 4 and the publishing),
the journal directory's policy (``journal_dir.py``: 3, 6), the privilege drop (``auth.py``:
5), Landlock (``landlock.py``: 7), serving (``serve.py``: 8), and how a step fails
(``startup.py``: ``Fatal``, one line, exit 1).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

import trio

# Imported plainly: a module that fails to import stops the daemon (fail closed); a broken
# landlock.py must never let it run unconfined.
from . import landlock as _landlock
from . import serve, socket_file
from . import systemd as _systemd
from .auth import Policy, drop_privileges, resolve_user
from .journal_dir import journal_dir as _journal_dir
from .journal_dir import take_journal as _take_journal
from .server import Server, ServerConfig
from .startup import PROG, Fatal
from .startup import log as _log

__all__ = ["main", "build_parser"]

#: the walk limit under Landlock, where each level costs time proportional to its depth:
#: cp -r of a 4096-deep chain takes ~10 s confined (docs/SECURITY.md, Hostile trees)
LANDLOCK_WALK_LIMIT = 4096


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
    p.add_argument("--resolver", choices=("openat2", "emulated"), default="openat2",
                   help="how paths are resolved beneath the root: openat2 (default; without it the daemon "
                        "refuses to start) or emulated (one O_PATH step per component, checked through "
                        "/proc/self/fd: for kernels or sandboxes without a usable openat2)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="private directory (outside the root) for the crash journal; default: "
                        "$STATE_DIRECTORY under systemd, else /run/beneathd/journal/DEV-INO when "
                        "started as root, else $XDG_RUNTIME_DIR/beneathd/journal/DEV-INO")
    p.add_argument("--no-journal", action="store_true",
                   help="keep no crash journal (a kill while replacing a file may leave "
                        "its .NAME.beneathd-XXXX temporary)")
    p.add_argument("--walk-limit", type=int, metavar="LEVELS",
                   help="deepest level cp -r / rm -r / move descend (default: 4096 under Landlock, where "
                        "each level costs time proportional to its depth; else 1048576)")
    p.add_argument("--max-watches", type=int, default=65536, metavar="N",
                   help="directories all watches of this daemon may hold at once (default 65536; more: ENOSPC)")
    p.add_argument("--max-watches-per-connection", type=int, default=16384, metavar="N",
                   help="directories the watches of one connection may hold (default 16384)")
    p.add_argument("--escape-log-window", type=float, default=60.0, metavar="SECONDS",
                   help="log a refused escape once per peer and path in this long, then the count of "
                        "the others (default 60)")
    p.add_argument("--follow-root", action="store_true",
                   help="look at the root's path every second; when it names another directory than the "
                        "one served (a restored volume, a new mount), exit with status 75 so that systemd "
                        "starts the daemon again on it (default: keep serving the directory first opened)")
    p.add_argument("--follow-root-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--no-landlock", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-connections", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--max-inflight", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--idle-timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    p.add_argument("--send-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=4, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    # A SIGTERM during startup (the socket is connectable before trio runs) must still
    # end in a clean shutdown: note it now, act on it once serving has started.
    serve.note_early_signals()
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
        listener, made, staged = socket_file.bind(args.socket)
        if target is not None and euid == 0:
            os.chown(staged, target[0], target[1])

    reaper = None
    root = None
    try:
        try:
            root = Root(args.root, no_xdev=args.no_xdev, resolver=args.resolver)
        except OSError as e:
            raise Fatal(f"cannot open root {args.root}: {e.strerror or e}") from None
        except Exception as e:
            raise Fatal(f"cannot open root {args.root}: {e}") from None

        if args.walk_limit is not None:
            try:
                root.walk_limit = args.walk_limit
            except ValueError as e:
                raise Fatal(f"--walk-limit: {e}") from None
        journal_dir, explicit_journal = _journal_dir(args, root.fileno(), target)
        if made is not None:
            # the default journal directory (under /run, root's) goes when the daemon does
            reaper = socket_file.start_reaper(args.socket, staged, made, None if explicit_journal else journal_dir)

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
            # confine() says "warning: ..." exactly when it applied nothing
            if args.walk_limit is None and not line.startswith("warning:"):
                root.walk_limit = LANDLOCK_WALK_LIMIT

        policy = Policy(set(args.allow_uid), set(args.allow_gid), set(args.read_only_uid), set(args.read_only_gid))
        cfg = ServerConfig(
            policy=policy,
            max_connections=args.max_connections,
            max_inflight=args.max_inflight,
            idle_timeout=args.idle_timeout,
            send_timeout=args.send_timeout,
            worker_threads=args.workers,
            max_watches=args.max_watches,
            max_watches_per_connection=args.max_watches_per_connection,
            escape_log_window=args.escape_log_window,
        )
        if reaper is not None:
            # only now does the socket file appear: whoever finds it can connect, and finds
            # the daemon dropped, confined and reaped-for (systemd's socket: it queues for us)
            socket_file.publish(reaper, args.socket)
        _log(f"walk limit: {root.walk_limit} levels")
        if root.resolver == "emulated":
            _log("resolver: emulated (--resolver emulated): paths are resolved one component at a time "
                 "without openat2, each '..' and each result checked through /proc/self/fd")
        else:
            _log("resolver: openat2")
        server = Server(root, listener, cfg)
        _log(f"serving {args.root} on {args.socket or 'the systemd socket'} as uid {os.geteuid()}")
        try:
            rc = 0
            if not serve.early_signal():
                follow = (os.path.abspath(args.root), args.follow_root_interval) if args.follow_root else None
                rc = trio.run(serve.run, server, args.idle_exit, serve.STATUS_INTERVAL, follow)
        finally:
            serve.notify("STOPPING=1")
        return rc
    finally:
        try:
            listener.close()
        except Exception:
            pass
        if root is not None and root.journal is not None:
            root.journal.discard_if_clean()  # an empty record file goes: the directory is empty
        if made is not None:
            try:  # when we still may; else the reaper does
                if socket_file.is_our_socket(args.socket, made):
                    os.unlink(args.socket)
            except OSError:
                pass
            socket_file.stop_reaper(reaper)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
