"""``beneathd-ctl``: file operations on a project through its beneathd daemon, from a shell.

Each subcommand is one method family of the API, with coreutils' names, flags, messages
(``beneathd-ctl: cannot stat 'x': No such file or directory``) and exit status (0 success,
1 a failure, 2 bad usage). ``--json`` prints results for scripts (one JSON document on
stdout); long work (``cp``, ``rm -r``, ``mv``, ``du``, ``put``, ``get``) shows a progress
bar (tqdm) on stderr when stdout is a terminal. Paths are relative to the project root.
"""

from __future__ import annotations

import argparse
import json
import os
import stat as _stat
import sys
import time
from typing import Any, Callable, Iterator

from ..protocol.types import Progress
from ._sync import Client

PROG = "beneathd-ctl"

EXAMPLES = """examples:
  beneathd-ctl -S /run/beneathd/p1.sock ls -l src
  beneathd-ctl -S /run/beneathd/p1.sock --json stat notes.md
  beneathd-ctl -S /run/beneathd/p1.sock cp -r src backup/src    # progress bar on a terminal
  beneathd-ctl -S /run/beneathd/p1.sock du -sh .
  echo hello | beneathd-ctl -S /run/beneathd/p1.sock put greeting.txt   # atomic
  beneathd-ctl -S /run/beneathd/p1.sock get big.tar ./big.tar
  beneathd-ctl -S /run/beneathd/p1.sock rm -rf build
  beneathd-ctl -S /run/beneathd/p1.sock --json watch src     # one JSON line per event, until ^C
  echo '[["mkdir", "d", {"parents": true}], ["write_file", "d/a", "hi"], ["stat", "d/a"]]' \\
    | beneathd-ctl -S /run/beneathd/p1.sock batch -         # one round trip
  beneathd-ctl -S /run/beneathd/p1.sock stats    # the daemon's counters: calls, errors, escapes refused

exit status: 0 success, 1 an operation failed (each failure is reported), 2 bad usage.
"""


class Out:
    """Where results go: text lines, or collected for one JSON document."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.items: list[Any] = []
        self.errors: list[dict[str, Any]] = []
        #: results went out as JSON lines already (watch): no document at the end
        self.json_lines = False

    def text(self, line: str) -> None:
        if not self.json:
            print(line)

    def item(self, obj: Any, line: str | None = None) -> None:
        if self.json:
            self.items.append(obj)
        elif line is not None:
            print(line)

    def error(self, msg: str, e: OSError | None = None, path: str | None = None) -> None:
        print(f"{PROG}: {msg}", file=sys.stderr)
        if self.json:
            err: dict[str, Any] = {"message": msg}
            if e is not None:
                err["errno"] = e.errno
                err["code"] = _code(e)
            if path is not None:
                err["path"] = path
            self.errors.append(err)

    def finish(self, rc: int) -> int:
        if self.json and not self.json_lines:
            json.dump({"ok": rc == 0, "results": self.items, "errors": self.errors}, sys.stdout, indent=None,
                      default=str)
            print()
        return rc


def _code(e: OSError) -> str:
    import errno

    if type(e).__name__ == "EscapeError":
        return "EESCAPE"
    return errno.errorcode.get(e.errno or 0, "EIO")


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _each(out: Out, paths: list[str], verb: str, fn: Callable[[str], Any]) -> int:
    """Run fn on each path; a failure is reported as coreutils does ("VERB 'p': why")."""
    rc = 0
    for p in paths:
        try:
            fn(p)
        except OSError as e:
            out.error(f"{verb} '{p}': {_why(e)}" if verb else f"{p}: {_why(e)}", e, p)
            rc = 1
    return rc


class Bar:
    """A tqdm progress bar for a progress= callback, shown only when stdout is a terminal."""

    def __init__(self, a: argparse.Namespace, desc: str, unit: str = "entries") -> None:
        self.bar: Any = None
        self.unit = unit
        if sys.stdout.isatty() and not a.json and not a.quiet:
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit=" " + unit if unit == "entries" else "B", unit_scale=unit != "entries",
                            file=sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, p: Progress) -> None:
        if self.bar is not None:
            n = p.entries if self.unit == "entries" else p.bytes
            self.bar.update(n - self.bar.n)
            if self.unit == "entries" and p.bytes:
                self.bar.set_postfix_str(_human(p.bytes), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)  # pragma: no cover


# -- the subcommands ------------------------------------------------------------------------


def _stat_json(st: os.stat_result) -> dict[str, Any]:
    return {"mode": st.st_mode, "type": _kind(st.st_mode), "size": st.st_size, "nlink": st.st_nlink,
            "uid": st.st_uid, "gid": st.st_gid, "ino": st.st_ino, "dev": st.st_dev, "blocks": st.st_blocks,
            "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _line(name: str, st: os.stat_result, link: str | None = None) -> str:
    tail = f" -> {link}" if link is not None else ""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    return (f"{_stat.filemode(st.st_mode)} {st.st_nlink:>3} {st.st_uid:>6} {st.st_gid:>6} {st.st_size:>10} "
            f"{when} {name}{tail}")


def _ls(c: Client, a: argparse.Namespace, out: Out) -> int:
    paths = a.paths or ["."]
    rc = 0
    for i, p in enumerate(paths):
        try:
            st = c.stat(p)
        except OSError as e:
            out.error(f"cannot access '{p}': {_why(e)}", e, p)
            rc = 1
            continue
        if not _stat.S_ISDIR(st.st_mode) or a.directory:
            lst = c.lstat(p)
            out.item({"path": p, **_stat_json(lst)}, _line(p, lst) if a.long else p)
            continue
        if len(paths) > 1:
            out.text(f"{'' if i == 0 else chr(10)}{p}:")
        try:
            entries = sorted(c.scandir(p), key=lambda e: e.name)
        except OSError as e:
            out.error(f"cannot open directory '{p}': {_why(e)}", e, p)
            rc = 1
            continue
        for ent in entries:
            if ent.name.startswith(".") and not a.all:
                continue
            st = ent.stat(follow_symlinks=False)
            out.item({"path": os.path.join(p, ent.name), "name": ent.name, "link_target": ent.link_target,
                      **_stat_json(st)},
                     _line(ent.name, st, ent.link_target) if a.long else ent.name)
    return rc


def _stat_cmd(c: Client, a: argparse.Namespace, out: Out) -> int:
    def one(p: str) -> None:
        st = c.stat(p) if a.dereference else c.lstat(p)
        out.item({"path": p, **_stat_json(st)},
                 f"  File: {p}\n  Size: {st.st_size}\tBlocks: {st.st_blocks}\tIO Block: {st.st_blksize}\t"
                 f"{_kind(st.st_mode)}\nDevice: {st.st_dev}\tInode: {st.st_ino}\tLinks: {st.st_nlink}\n"
                 f"Access: ({_stat.S_IMODE(st.st_mode):04o}/{_stat.filemode(st.st_mode)})  "
                 f"Uid: {st.st_uid}  Gid: {st.st_gid}\nModify: {st.st_mtime_ns}")

    return _each(out, a.paths, "cannot stat", one)


def _kind(mode: int) -> str:
    for test, name in ((_stat.S_ISREG, "regular file"), (_stat.S_ISDIR, "directory"),
                       (_stat.S_ISLNK, "symbolic link"), (_stat.S_ISFIFO, "fifo"), (_stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _du(c: Client, a: argparse.Namespace, out: Out) -> int:
    def one(p: str) -> None:
        with Bar(a, f"du {p}") as bar:
            size, entries = c.du(p, progress=bar)
        shown = _human(size) if a.human else str((size + 1023) // 1024)
        out.item({"path": p, "bytes": size, "entries": entries}, f"{shown}\t{p}")

    return _each(out, a.paths or ["."], "cannot access", one)


def _tree(c: Client, a: argparse.Namespace, out: Out) -> int:
    """The walk of each path: one line per entry (find-like), or one JSON item per directory."""
    def one(top: str) -> None:
        for dirpath, dirnames, filenames in c.walk(top, follow_symlinks=a.follow):
            out.item({"dirpath": dirpath, "dirnames": dirnames, "filenames": filenames}, dirpath)
            if not out.json:
                for n in sorted(filenames):
                    print(n if dirpath == "." else os.path.join(dirpath, n))

    return _each(out, a.paths or ["."], "cannot walk", one)


def _watch(c: Client, a: argparse.Namespace, out: Out) -> int:
    """Events as they come, one line each (``--json``: one JSON object per line), until
    interrupted or the watched path goes away."""
    try:
        w = c.watch(a.path, recursive=not a.flat, timeout=a.timeout)
    except OSError as e:
        out.error(f"cannot watch '{a.path}': {_why(e)}", e, a.path)
        return 1
    out.json_lines = out.json  # an endless stream: no one document at the end
    with w:
        try:
            for ev in w:
                if out.json:
                    print(json.dumps({"kind": ev.kind, "path": ev.path, "is_dir": ev.is_dir, "cookie": ev.cookie}),
                          flush=True)
                else:
                    extra = f" (cookie {ev.cookie})" if ev.cookie else ""
                    print(f"{ev.kind}\t{ev.path}{'/' if ev.is_dir else ''}{extra}", flush=True)
        except OSError as e:
            out.error(f"watch of '{a.path}' ended: {_why(e)}", e, a.path)
            return 1
    return 0


def _jsonable(v: Any) -> Any:
    if isinstance(v, os.stat_result):
        return {k: getattr(v, k) for k in dir(v) if k.startswith("st_") and not k.endswith("time")}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "name") and hasattr(v, "is_dir"):  # a DirEntry
        return {"name": _jsonable(v.name), "dir": v.is_dir(follow_symlinks=False),
                "link": v.is_symlink(), "link_target": _jsonable(getattr(v, "link_target", None))}
    return v


def _batch(c: Client, a: argparse.Namespace, out: Out) -> int:
    """Run the calls of a JSON file (``-``: stdin) in one round trip: a list of
    ``[method, arg, ..., {keyword: value}]``; a ``data`` argument given as a string is
    its UTF-8 bytes."""
    from ..protocol.methods import API

    try:
        text = sys.stdin.read() if a.file == "-" else open(a.file, encoding="utf-8").read()
        calls = json.loads(text)
    except (OSError, ValueError) as e:
        out.error(f"cannot read the batch '{a.file}': {e}")
        return 1
    if not isinstance(calls, list) or not all(isinstance(x, list) and x and isinstance(x[0], str) for x in calls):
        out.error("a batch file holds a JSON list of [method, arg, ..., {keyword: value}]")
        return 1
    for call in calls:  # data parameters travel as bytes
        m = API.get(call[0])
        if m is not None:
            for i, p in enumerate(q for q in m.params if q.wire):
                if p.type == "data" and i + 1 < len(call) and isinstance(call[i + 1], str):
                    call[i + 1] = call[i + 1].encode()
    try:
        results = c.batch([tuple(x) for x in calls], stop_on_error=a.stop_on_error, timeout=a.timeout)
    except (OSError, TypeError, ValueError) as e:
        out.error(f"batch refused: {e}", e if isinstance(e, OSError) else None)
        return 1
    rc = 0
    for call, r in zip(calls, results):
        if rc and a.stop_on_error:
            out.item({"method": call[0], "not_run": True}, f"{call[0]}\tnot run")
            continue
        if isinstance(r, Exception):
            rc = 1
            out.error(f"{call[0]}: {_why(r) if isinstance(r, OSError) else r}", r if isinstance(r, OSError) else None)
            continue
        out.item({"method": call[0], "result": _jsonable(r)}, f"{call[0]}\t{json.dumps(_jsonable(r))}")
    return rc


def _stats(c: Client, a: argparse.Namespace, out: Out) -> int:
    """The daemon's counters, one ``name value`` line each (``--json``: one object)."""
    try:
        st = c.stats()
    except OSError as e:
        out.error(f"cannot read the daemon's counters: {_why(e)}", e)
        return 1
    width = max(map(len, st), default=0)
    out.item(st, "\n".join(f"{k:<{width}}  {v}" for k, v in st.items()))
    return 0


def _mkdir(c: Client, a: argparse.Namespace, out: Out) -> int:
    mode = int(a.mode, 8) if a.mode else 0o777
    return _each(out, a.paths, "cannot create directory",
                 lambda p: c.mkdir(p, mode, parents=a.parents, exist_ok=a.parents))


def _rm(c: Client, a: argparse.Namespace, out: Out) -> int:
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
            c.rm(p, force=a.force)
            return
        with Bar(a, f"rm {p}") as bar:
            c.rm(p, recursive=True, force=a.force, progress=bar)

    return _each(out, a.paths, "cannot remove", one)


def _into(c: Client, src: str, dst: str) -> str:
    """cp/mv/ln: a destination that is a directory receives the source under its name."""
    try:
        if _stat.S_ISDIR(c.stat(dst).st_mode):
            return os.path.join(dst, os.path.basename(src.rstrip("/")))
    except FileNotFoundError:
        pass
    return dst


def _cp(c: Client, a: argparse.Namespace, out: Out) -> int:
    rc = 0
    dst_dir = len(a.srcs) > 1
    for src in a.srcs:
        try:
            if not a.recursive and _stat.S_ISDIR(c.stat(src).st_mode):
                out.error(f"-r not specified; omitting directory '{src}'", None, src)
                rc = 1
                continue
            dst = _into(c, src, a.dst) if not dst_dir else os.path.join(a.dst, os.path.basename(src.rstrip("/")))
            with Bar(a, f"cp {src}") as bar:
                c.cp(src, dst, recursive=a.recursive, overwrite=not a.no_clobber, preserve=True, progress=bar)
            out.item({"src": src, "dst": dst})
        except OSError as e:
            out.error(f"cannot copy '{src}' to '{a.dst}': {_why(e)}", e, src)
            rc = 1
    return rc


def _mv(c: Client, a: argparse.Namespace, out: Out) -> int:
    try:
        dst = _into(c, a.src, a.dst)
        with Bar(a, f"mv {a.src}") as bar:
            c.move(a.src, dst, overwrite=not a.no_clobber, progress=bar)
        out.item({"src": a.src, "dst": dst})
    except OSError as e:
        out.error(f"cannot move '{a.src}' to '{a.dst}': {_why(e)}", e, a.src)
        return 1
    return 0


def _ln(c: Client, a: argparse.Namespace, out: Out) -> int:
    try:
        dst = _into(c, a.target, a.name) if not a.symbolic else a.name
        if a.force:
            c.rm(dst, force=True)
        if a.symbolic:
            c.symlink(a.target, dst)
        else:
            c.link(a.target, dst)
        out.item({"target": a.target, "name": dst})
    except OSError as e:
        kind = "symbolic link" if a.symbolic else "hard link"
        out.error(f"failed to create {kind} '{a.name}': {_why(e)}", e, a.name)
        return 1
    return 0


def _chmod(c: Client, a: argparse.Namespace, out: Out) -> int:
    try:
        mode = int(a.mode, 8)
    except ValueError:
        out.error(f"invalid mode: '{a.mode}' (octal modes only)")
        return 1
    return _each(out, a.paths, "changing permissions of", lambda p: c.chmod(p, mode))


def _chown(c: Client, a: argparse.Namespace, out: Out) -> int:
    owner, _, group = a.owner.partition(":")
    try:
        uid = int(owner) if owner else -1
        gid = int(group) if group else -1
    except ValueError:
        out.error(f"invalid user: '{a.owner}' (numeric uid[:gid] only: names are the host's, not the project's)")
        return 1
    return _each(out, a.paths, "changing ownership of", lambda p: c.chown(p, uid, gid))


def _touch(c: Client, a: argparse.Namespace, out: Out) -> int:
    def one(p: str) -> None:
        try:
            c.utime(p)
        except FileNotFoundError:
            if a.no_create:
                return
            with c.open(p, "xb"):
                pass

    return _each(out, a.paths, "cannot touch", one)


def _truncate(c: Client, a: argparse.Namespace, out: Out) -> int:
    return _each(out, a.paths, "cannot open", lambda p: c.truncate(p, a.size))


def _cat(c: Client, a: argparse.Namespace, out: Out) -> int:
    stdout = sys.stdout.buffer

    def one(p: str) -> None:
        with c.open(p, "rb") as f:
            for chunk in _chunks(f):
                stdout.write(chunk)
        stdout.flush()

    return _each(out, a.paths, "", one)  # cat's messages: "NAME: why"


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        b = f.read(size)
        if not b:
            return
        yield b


def _put(c: Client, a: argparse.Namespace, out: Out) -> int:
    """A local file (or stdin) into the project, atomically (published whole at the end)."""
    src = sys.stdin.buffer if a.local in (None, "-") else None
    try:
        local = src if src is not None else open(a.local, "rb")
    except OSError as e:
        out.error(f"cannot open '{a.local}' for reading: {_why(e)}", e, a.local)
        return 1
    try:
        total = None if src is not None else os.fstat(local.fileno()).st_size
        with Bar(a, f"put {a.path}", unit="bytes") as bar, c.open(a.path, "wb", atomic=True) as f:
            done = 0
            if bar.bar is not None and total is not None:
                bar.bar.total = total
            for chunk in _chunks(local):
                f.write(chunk)
                done += len(chunk)
                bar(Progress(0, done))
        out.item({"path": a.path, "bytes": done})
    except OSError as e:
        out.error(f"cannot write '{a.path}': {_why(e)}", e, a.path)
        return 1
    finally:
        if src is None:
            local.close()
    return 0


def _get(c: Client, a: argparse.Namespace, out: Out) -> int:
    """A project file to a local path (written beside it and renamed, so whole or absent) or stdout."""
    try:
        f = c.open(a.path, "rb", buffering=0)
    except OSError as e:
        out.error(f"cannot open '{a.path}' for reading: {_why(e)}", e, a.path)
        return 1
    with f:
        total = os.fstat(f.fileno()).st_size
        to_stdout = a.local in (None, "-")
        tmp = None if to_stdout else f"{a.local}.beneathd-get-{os.getpid()}"
        try:
            dst: Any = sys.stdout.buffer if to_stdout else open(tmp, "xb")  # type: ignore[arg-type]
            done = 0
            with Bar(a, f"get {a.path}", unit="bytes") as bar:
                if bar.bar is not None:
                    bar.bar.total = total
                for chunk in _chunks(f):
                    dst.write(chunk)
                    done += len(chunk)
                    bar(Progress(0, done))
            if to_stdout:
                dst.flush()
            else:
                dst.close()
                os.replace(tmp, a.local)  # type: ignore[arg-type]
            out.item({"path": a.path, "bytes": done})
        except OSError as e:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            out.error(f"cannot write '{a.local or '-'}': {_why(e)}", e, a.local)
            return 1
    return 0


# -- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", "-S", required=True, help="the daemon's socket (e.g. /run/beneathd/PROJECT.sock)")
    p.add_argument("--json", action="store_true", help="print results and errors as one JSON document")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on a call after this long (the daemon stops it)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Callable[..., int], help: str, add_help: bool = True,
            aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help, add_help=add_help, aliases=list(aliases))
        if not add_help:  # -h means something else here (du -h), as in coreutils
            s.add_argument("--help", action="help", help="show this help message and exit")
        s.set_defaults(fn=fn)
        return s

    s = cmd("ls", _ls, "list directory contents")
    s.add_argument("-l", dest="long", action="store_true", help="long listing (links show their target)")
    s.add_argument("-a", dest="all", action="store_true", help="include names starting with '.'")
    s.add_argument("-d", dest="directory", action="store_true", help="list directories themselves")
    s.add_argument("paths", nargs="*")
    s = cmd("stat", _stat_cmd, "file status (of a link itself unless -L)")
    s.add_argument("-L", dest="dereference", action="store_true", help="follow a final symlink (in the tree)")
    s.add_argument("paths", nargs="+")
    s = cmd("du", _du, "disk usage of trees (never following links)", add_help=False)
    s.add_argument("-s", dest="summarize", action="store_true", help="one total per path (the only mode)")
    s.add_argument("-h", dest="human", action="store_true", help="sizes like 1.5M")
    s.add_argument("paths", nargs="*")
    s = cmd("tree", _tree, "walk trees, printing every path (find-like; streamed)", aliases=("walk",))
    s.add_argument("-L", dest="follow", action="store_true", help="follow links to directories in the tree")
    s.add_argument("paths", nargs="*")
    s = cmd("watch", _watch, "print change events beneath a path as they come (one line each)")
    s.add_argument("--flat", action="store_true", help="only the directory's own entries, not the tree below")
    s.add_argument("path", nargs="?", default=".")
    s = cmd("batch", _batch, "run the calls of a JSON file in one round trip (a line per result)")
    s.add_argument("--stop-on-error", action="store_true", help="do not run the calls after the first failure")
    s.add_argument("file", help='a JSON list of [method, arg, ..., {keyword: value}] ("-": stdin)')
    cmd("stats", _stats, "the daemon's counters: calls, errors, escapes refused, connections")
    s = cmd("mkdir", _mkdir, "make directories")
    s.add_argument("-p", dest="parents", action="store_true", help="make parents as needed, no error if existing")
    s.add_argument("-m", dest="mode", default=None, help="octal mode (less the daemon's umask)")
    s.add_argument("paths", nargs="+")
    s = cmd("rm", _rm, "remove files or directories (never following links)")
    s.add_argument("-r", "-R", dest="recursive", action="store_true", help="remove directories and their contents")
    s.add_argument("-f", dest="force", action="store_true", help="ignore nonexistent files")
    s.add_argument("paths", nargs="+")
    s = cmd("cp", _cp, "copy files and directories (links inside are copied as links)")
    s.add_argument("-r", "-R", dest="recursive", action="store_true", help="copy directories recursively")
    s.add_argument("-n", dest="no_clobber", action="store_true", help="do not overwrite existing files")
    s.add_argument("srcs", nargs="+", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s = cmd("mv", _mv, "move (rename, or copy then remove across mounts)")
    s.add_argument("-n", dest="no_clobber", action="store_true", help="do not overwrite an existing file")
    s.add_argument("src")
    s.add_argument("dst")
    s = cmd("ln", _ln, "make links")
    s.add_argument("-s", dest="symbolic", action="store_true", help="symbolic link (TARGET is its text)")
    s.add_argument("-f", dest="force", action="store_true", help="remove an existing NAME first")
    s.add_argument("target")
    s.add_argument("name")
    s = cmd("chmod", _chmod, "change permission bits (octal; never through a symlink)")
    s.add_argument("mode")
    s.add_argument("paths", nargs="+")
    s = cmd("chown", _chown, "change owner (numeric UID[:GID]; of a link itself)")
    s.add_argument("owner")
    s.add_argument("paths", nargs="+")
    s = cmd("touch", _touch, "set times to now, creating empty files")
    s.add_argument("-c", dest="no_create", action="store_true", help="do not create files")
    s.add_argument("paths", nargs="+")
    s = cmd("truncate", _truncate, "set the size of files")
    s.add_argument("-s", dest="size", type=int, required=True, help="the new size in bytes")
    s.add_argument("paths", nargs="+")
    s = cmd("cat", _cat, "write files to stdout")
    s.add_argument("paths", nargs="+")
    s = cmd("put", _put, "store a local file (or stdin) in the project atomically")
    s.add_argument("path", help="where in the project")
    s.add_argument("local", nargs="?", default=None, help="the local file (default: stdin)")
    s = cmd("get", _get, "copy a project file to a local file (or stdout)")
    s.add_argument("path", help="the file in the project")
    s.add_argument("local", nargs="?", default=None, help="the local file (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)  # bad usage: argparse exits 2
    out = Out(a.json)
    try:
        c = Client(a.socket, timeout=a.timeout)
    except OSError as e:
        out.error(f"cannot connect to '{a.socket}': {_why(e)}", e)
        return out.finish(1)
    try:
        with c:
            rc = a.fn(c, a, out)
    except ConnectionError as e:
        out.error(f"connection lost: {e}", e)
        rc = 1
    except BrokenPipeError:  # pragma: no cover - stdout closed by the reader (head)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return out.finish(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
