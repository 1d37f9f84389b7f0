"""``beneathd-ctl --socket PATH CMD ...``: one-off operations against a daemon.

Commands: ``ls [-l] [PATH...]``, ``stat PATH...``, ``mkdir [-p] PATH...``,
``rm [-r] [-f] PATH...``, ``cp [-r] SRC DST``, ``mv SRC DST``, ``cat PATH...``,
``put PATH`` (stdin -> file, atomically).  Messages and exit status follow coreutils
(``beneathd-ctl: cannot stat 'x': No such file or directory``; 0 success, 1 failure).
"""

from __future__ import annotations

import argparse
import os
import stat as _stat
import sys
from typing import Any, Callable

from ._sync import Client

PROG = "beneathd-ctl"


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


def _why(e: OSError) -> str:
    if e.strerror:
        return e.strerror
    return str(e)


def _each(paths: list[str], verb: str, fn: Callable[[str], Any]) -> int:
    """Run fn on each path; report failures as coreutils does ("VERB 'p': why", or "p: why")."""
    rc = 0
    for p in paths:
        try:
            fn(p)
        except OSError as e:
            _err(f"{verb} '{p}': {_why(e)}" if verb else f"{p}: {_why(e)}")
            rc = 1
    return rc


def _ls(c: Client, a: argparse.Namespace) -> int:
    paths = a.paths or ["."]
    rc = 0
    for i, p in enumerate(paths):
        try:
            st = c.stat(p)
        except OSError as e:
            _err(f"cannot access '{p}': {_why(e)}")
            rc = 1
            continue
        if not _stat.S_ISDIR(st.st_mode):
            print(_line(p, c.lstat(p)) if a.long else p)
            continue
        if len(paths) > 1:
            print(f"{'' if i == 0 else chr(10)}{p}:")
        try:
            entries = sorted(c.scandir(p), key=lambda e: e.name)
        except OSError as e:
            _err(f"cannot open directory '{p}': {_why(e)}")
            rc = 1
            continue
        for ent in entries:
            if ent.name.startswith(".") and not a.all:
                continue
            if a.long:
                print(_line(ent.name, ent.stat(follow_symlinks=False)))
            else:
                print(ent.name)
    return rc


def _line(name: str, st: os.stat_result) -> str:
    return f"{_stat.filemode(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>6} {st.st_gid:>6} {st.st_size:>10} {name}"


def _stat_cmd(c: Client, a: argparse.Namespace) -> int:
    def one(p: str) -> None:
        st = c.lstat(p) if not a.dereference else c.stat(p)
        print(f"  File: {p}")
        print(f"  Size: {st.st_size}\tBlocks: {st.st_blocks}\tIO Block: {st.st_blksize}\t"
              f"{_kind(st.st_mode)}")
        print(f"Device: {st.st_dev}\tInode: {st.st_ino}\tLinks: {st.st_nlink}")
        print(f"Access: ({_stat.S_IMODE(st.st_mode):04o}/{_stat.filemode(st.st_mode)})  "
              f"Uid: {st.st_uid}  Gid: {st.st_gid}")
        print(f"Modify: {st.st_mtime_ns}")

    return _each(a.paths, "cannot stat", one)


def _kind(mode: int) -> str:
    for test, name in ((_stat.S_ISREG, "regular file"), (_stat.S_ISDIR, "directory"),
                       (_stat.S_ISLNK, "symbolic link"), (_stat.S_ISFIFO, "fifo"), (_stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _mkdir(c: Client, a: argparse.Namespace) -> int:
    return _each(a.paths, "cannot create directory",
                 lambda p: c.mkdir(p, parents=a.parents, exist_ok=a.parents))


def _rm(c: Client, a: argparse.Namespace) -> int:
    def one(p: str) -> None:
        if not a.recursive:
            try:
                st = c.lstat(p)
            except FileNotFoundError:
                if a.force:
                    return
                raise
            if _stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "Is a directory", p)
        c.rm(p, recursive=a.recursive, force=a.force)

    return _each(a.paths, "cannot remove", one)


def _cp(c: Client, a: argparse.Namespace) -> int:
    try:
        dst = a.dst
        try:
            if c.stat(dst).st_mode and _stat.S_ISDIR(c.stat(dst).st_mode):
                dst = os.path.join(dst, os.path.basename(a.src.rstrip("/")))
        except FileNotFoundError:
            pass
        if not a.recursive and _stat.S_ISDIR(c.stat(a.src).st_mode):
            _err(f"-r not specified; omitting directory '{a.src}'")
            return 1
        c.cp(a.src, dst, recursive=a.recursive)
    except OSError as e:
        _err(f"cannot copy '{a.src}' to '{a.dst}': {_why(e)}")
        return 1
    return 0


def _mv(c: Client, a: argparse.Namespace) -> int:
    try:
        dst = a.dst
        try:
            if _stat.S_ISDIR(c.stat(dst).st_mode):
                dst = os.path.join(dst, os.path.basename(a.src.rstrip("/")))
        except FileNotFoundError:
            pass
        c.move(a.src, dst, overwrite=True)
    except OSError as e:
        _err(f"cannot move '{a.src}' to '{a.dst}': {_why(e)}")
        return 1
    return 0


def _cat(c: Client, a: argparse.Namespace) -> int:
    out = sys.stdout.buffer

    def one(p: str) -> None:
        with c.open(p, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                out.write(b)
        out.flush()

    return _each(a.paths, "", one)  # cat's messages: "NAME: why"


def _put(c: Client, a: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read()
    try:
        c.write_file(a.path, data)
    except OSError as e:
        _err(f"cannot write '{a.path}': {_why(e)}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="One-off file operations through a beneathd daemon.")
    p.add_argument("--socket", "-S", required=True, help="the daemon's socket")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ls")
    s.add_argument("-l", dest="long", action="store_true")
    s.add_argument("-a", dest="all", action="store_true")
    s.add_argument("paths", nargs="*")
    s.set_defaults(fn=_ls)
    s = sub.add_parser("stat")
    s.add_argument("-L", dest="dereference", action="store_true")
    s.add_argument("paths", nargs="+")
    s.set_defaults(fn=_stat_cmd)
    s = sub.add_parser("mkdir")
    s.add_argument("-p", dest="parents", action="store_true")
    s.add_argument("paths", nargs="+")
    s.set_defaults(fn=_mkdir)
    s = sub.add_parser("rm")
    s.add_argument("-r", "-R", dest="recursive", action="store_true")
    s.add_argument("-f", dest="force", action="store_true")
    s.add_argument("paths", nargs="+")
    s.set_defaults(fn=_rm)
    s = sub.add_parser("cp")
    s.add_argument("-r", "-R", dest="recursive", action="store_true")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(fn=_cp)
    s = sub.add_parser("mv")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(fn=_mv)
    s = sub.add_parser("cat")
    s.add_argument("paths", nargs="+")
    s.set_defaults(fn=_cat)
    s = sub.add_parser("put")
    s.add_argument("path")
    s.set_defaults(fn=_put)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    # combined short flags like -rf work through argparse already
    a = p.parse_args(argv)
    try:
        c = Client(a.socket)
    except OSError as e:
        _err(f"cannot connect to '{a.socket}': {_why(e)}")
        return 1
    try:
        with c:
            return a.fn(c, a)
    except ConnectionError as e:
        _err(f"connection lost: {e}")
        return 1
    except BrokenPipeError:  # pragma: no cover
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
