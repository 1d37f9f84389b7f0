"""The method table, written once.

It names every operation of the API with its parameters (name, wire type, default,
keyword-only), whether it mutates the tree, whether it returns an fd and whether it may
run long.  ``Root`` is checked against it (tests), and ``Client`` / ``AsyncClient``
are generated from it; the daemon validates requests with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .modes import is_write_mode

__all__ = ["REQUIRED", "Param", "Method", "METHODS", "API", "ROOT_API", "MUTATING", "READ_ONLY", "call_mutates"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

#: Wire value types a parameter may have.
#: path   - str or bytes, travels as msgpack bin; results echo the caller's type
#: text   - a symlink target: str or bytes, never resolved
#: data   - bytes-like payload
#: int, bool, str - what they say
#: ns     - None or a pair of ints (atime_ns, mtime_ns)
#: openmode - a Python open() mode string ("r", "wb", "a+", "x" ...)
#: optstr - None or str
#: progress - a callable taking a Progress, or None (never travels: wire=False)
#: calls   - a batch's calls: [[method, params], ...] (checked call by call by the daemon)
PARAM_TYPES = frozenset({"path", "text", "data", "int", "bool", "str", "optstr", "ns", "openmode", "progress",
                         "calls"})

#: Result kinds: none, bool, stat, names, entries, path, text, bytes, fd, usage
#: (usage: a pair of ints, (bytes_on_disk, entries)), walk (a stream: the tuples come in
#: "walk" pages before a nil final result), watch (a stream of "watch" pages of events,
#: the first one empty once the watch is in place, until the client cancels it)
#: batch (one [error, result] pair per call, in order; nil pairs for calls not run)
#: stats (a map of counter name -> int: the daemon's own counters)
RESULT_TYPES = frozenset({"none", "bool", "stat", "names", "entries", "path", "text", "bytes", "fd", "usage",
                          "walk", "watch", "batch", "stats"})


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = REQUIRED
    kwonly: bool = False
    #: travels on the wire (False: used by the client only, e.g. open()'s buffering)
    wire: bool = True

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[Param, ...]
    result: str
    mutates: bool
    returns_fd: bool = False
    #: True, False, the name of a bool parameter that makes the call long, or
    #: ("size", param, limit): long when that bytes parameter is larger than limit
    long: bool | str | tuple[str, str, int] = False
    doc: str = ""
    #: part of the protocol, not of the API: served by the daemon's connection itself (an
    #: atomic writer's publish and discard), not a Root method, not a client method
    internal: bool = False
    #: part of the API but answered by the daemon from its own state, not by the tree (the
    #: counters of ``stats``): a client method, not a ``Root`` one (in-process there is no
    #: daemon to count anything)
    daemon: bool = False

    def is_long(self, args: dict[str, Any]) -> bool:
        if self.result == "batch":  # long if one of its calls may be (raw [method, params] pairs)
            return any(c.__class__ is list and c and c[0].__class__ is str and c[0] in METHODS
                       and METHODS[c[0]].long is not False for c in args["calls"])
        if isinstance(self.long, str):
            return bool(args.get(self.long))
        if isinstance(self.long, tuple):
            _, param, limit = self.long
            data = args.get(param)
            return not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > limit
        return self.long

    @property
    def wire_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.wire)

    @property
    def streams(self) -> bool:
        """Its results come as intermediate pages (version 2), paced by the client's credit."""
        return self.result in ("walk", "watch")

    @property
    def reports_progress(self) -> bool:
        """Takes ``progress=`` (and on ``Root`` a ``job=``): its work is counted as it goes,
        and it stops when cancelled (tree walks, file copies)."""
        return any(p.type == "progress" for p in self.params)


def _p(name: str, type: str, default: Any = REQUIRED, kwonly: bool = False, wire: bool = True) -> Param:
    return Param(name, type, default, kwonly, wire)


def _k(name: str, type: str, default: Any) -> Param:
    return Param(name, type, default, True)


#: write_file payloads up to this size run inline on the daemon's loop (one small write)
SMALL_WRITE = 64 * 1024

PATH = _p("path", "path")
SRC, DST = _p("src", "path"), _p("dst", "path")
#: a client-side callback (DESIGN.md "Progress"): the client asks the daemon for progress
PROGRESS = _p("progress", "progress", None, kwonly=True, wire=False)

_TABLE = [
    Method("stat", (PATH, _k("follow_symlinks", "bool", True)), "stat", False, doc="os.stat beneath the root"),
    Method("lstat", (PATH,), "stat", False, doc="os.lstat beneath the root"),
    Method("exists", (PATH,), "bool", False, doc="True if path exists; escapes still raise"),
    Method("listdir", (_p("path", "path", "."),), "names", False, long=True, doc="os.listdir"),
    Method("scandir", (_p("path", "path", "."),), "entries", False, long=True, doc="os.scandir, as a list"),
    Method("du", (_p("path", "path", "."), PROGRESS), "usage", False, long=True,
           doc="(bytes_on_disk, entries) of a tree, never following links"),
    Method("walk", (_p("top", "path", "."), _k("top_down", "bool", True), _k("follow_symlinks", "bool", False),
                    PROGRESS),
           "walk", False, long=True, doc="pathlib.Path.walk beneath the root, streamed"),
    Method("watch", (_p("path", "path", "."), _k("recursive", "bool", True), _k("max_queue", "int", 4096)),
           "watch", False, long=True, doc="change events beneath path, streamed until closed"),
    Method("readlink", (PATH,), "text", False, doc="os.readlink"),
    Method("realpath", (PATH,), "path", False, doc="canonical path relative to the root"),
    Method(
        "mkdir",
        (PATH, _p("mode", "int", 0o777), _k("parents", "bool", False), _k("exist_ok", "bool", False)),
        "none", True, doc="pathlib.Path.mkdir",
    ),
    Method("unlink", (PATH, _k("missing_ok", "bool", False)), "none", True, doc="os.unlink"),
    Method("rmdir", (PATH,), "none", True, doc="os.rmdir"),
    Method("rename", (SRC, DST, _k("noreplace", "bool", False)), "none", True, doc="renameat2"),
    Method("exchange", (_p("a", "path"), _p("b", "path")), "none", True, doc="renameat2(RENAME_EXCHANGE)"),
    Method("move", (SRC, DST, _k("overwrite", "bool", False), PROGRESS), "none", True, long=True,
           doc="rename, or copy then remove across mounts"),
    Method("link", (SRC, DST), "none", True, doc="hard link, never following src"),
    Method("symlink", (_p("target", "text"), PATH), "none", True, doc="os.symlink(target, path)"),
    Method("chmod", (PATH, _p("mode", "int")), "none", True, doc="chmod, never through a final symlink"),
    Method("chown", (PATH, _p("uid", "int"), _p("gid", "int")), "none", True, doc="lchown"),
    Method("utime", (PATH, _k("ns", "ns", None)), "none", True, doc="utime, not following a final symlink"),
    Method("truncate", (PATH, _p("length", "int")), "none", True, doc="os.truncate"),
    Method(
        "copy_file",
        (SRC, DST, _k("overwrite", "bool", True), _k("reflink", "str", "auto"), PROGRESS),
        "none", True, long=True, doc="atomic file copy",
    ),
    Method(
        "cp",
        (SRC, DST, _k("recursive", "bool", False), _k("overwrite", "bool", True), _k("preserve", "bool", True),
         PROGRESS),
        "none", True, long=True, doc="cp [-r]; links copied as links",
    ),
    Method("rm", (PATH, _k("recursive", "bool", False), _k("force", "bool", False), PROGRESS), "none", True,
           long="recursive", doc="rm [-r] [-f]"),
    Method("mkfifo", (PATH, _p("mode", "int", 0o666)), "none", True, doc="os.mkfifo"),
    Method("read_file", (PATH, PROGRESS), "bytes", False, long=True, doc="whole file contents"),
    Method("write_file", (PATH, _p("data", "data"), _k("mode", "int", 0o666), PROGRESS), "none", True,
           long=("size", "data", SMALL_WRITE),
           doc="atomic replace"),
    Method(
        "open",
        (
            PATH,
            _p("mode", "openmode", "r"),
            _p("buffering", "int", -1, kwonly=True, wire=False),
            _p("encoding", "optstr", None, kwonly=True, wire=False),
            _k("perms", "int", 0o666),
            _k("atomic", "bool", False),
        ),
        "fd", False, returns_fd=True, doc="a file object over an fd opened beneath the root",
    ),
    Method("batch", (_p("calls", "calls"), _k("stop_on_error", "bool", False)), "batch", False, long=True,
           doc="many calls in one round trip, run in order; each slot a result or the exception"),
    Method("stats", (), "stats", False, daemon=True,
           doc="the daemon's counters: calls, errors, escapes refused, connections"),
    # an atomic writer (open(..., atomic=True)) of this connection, by the handle its open
    # reply carried: publish its contents at its path whole, or drop them
    Method("writer_publish", (_p("handle", "int"),), "none", True, internal=True,
           doc="publish an atomic writer's contents"),
    Method("writer_discard", (_p("handle", "int"),), "none", True, internal=True,
           doc="drop an atomic writer's contents"),
]

for _m in _TABLE:  # the table is checked once, at import: a typo is an error, not a silent default
    if _m.result not in RESULT_TYPES or any(p.type not in PARAM_TYPES for p in _m.params):
        raise ValueError(f"protocol/methods.py: {_m.name} has an unknown parameter or result type")

#: name -> Method, in table order.
METHODS: dict[str, Method] = {m.name: m for m in _TABLE}
MUTATING = frozenset(m.name for m in _TABLE if m.mutates)
READ_ONLY = frozenset(m.name for m in _TABLE if not m.mutates)
#: the API: what Client and AsyncClient have a method for
API: dict[str, Method] = {n: m for n, m in METHODS.items() if not m.internal}
#: what Root has a method for: the API but the daemon's own (``Method.daemon``)
ROOT_API: dict[str, Method] = {n: m for n, m in API.items() if not m.daemon}


def call_mutates(m: Method, args: Mapping[str, Any]) -> bool:
    """Whether this call can change the tree: a mutating method, or ``open`` for writing.

    The one statement of the rule: the daemon refuses such calls from read-only peers, and
    a client never sends one again after a broken connection (it may have run)."""
    if m.result == "batch":  # (its calls are refused one by one: see ServerConnection)
        return any(getattr(r, "method", None) is not None and call_mutates(r.method, r.args) for r in args["calls"])
    return m.mutates or (m.returns_fd and is_write_mode(args["mode"]))
