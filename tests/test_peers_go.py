"""Go's os.Root tables, mapped to beneathd (issue 14).

Ported as data (not code) from golang/go ``src/os/root_test.go``:

* ``rootTestCases`` (25 cases) through every operation Go runs them through (Open of a file
  and of a directory, Create, Chmod, Chtimes, Mkdir, MkdirAll, Remove of a file and of a
  directory, RemoveAll, Stat, Lstat, Readlink, Rename and Link from and to, Symlink), plus
  beneathd's ``write_file``.  Go's "error" is an escape here when the case's path escapes
  (Go's ``ErrPathEscapes``: Go's os.Root refuses ``..`` above the root and absolute links
  as beneathd does), and the errno of the case otherwise.  Where beneathd deliberately
  answers otherwise, the difference is in ``DIFFERENCES`` with its reason.
* ``rootConsistencyTestCases`` (23 cases, with a 500-byte name, an unreadable directory,
  a Unix socket as the target and in the path, a NUL byte), plus search-only (0311 and
  0711) directories: a path that does not escape must give what plain ``os`` gives on
  the same path (the same result, exception class and errno) and leave the same tree.
  The unreadable and search-only directories mean nothing to root, so those run again as
  ``nobody`` in a subprocess (``test_consistency_as_nobody``).

Every table runs over every backend (root, client, async, asyncio, root-emulated,
client-emulated), on a tmpfs root (a tree is built for every case).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import pytest

from _peers import attempt, clear, kind, tree
from _util import IS_ROOT, tmpfs
from backends import BACKENDS


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def tfs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """``fs`` over every backend, on ``ROOT`` in a tmpfs (Go's name for the root); one per
    backend for the module (every case builds its tree afresh)."""
    with tmpfs(tmp_path_factory.mktemp("peers") / "t", size="64m") as t:
        root = t / "ROOT"
        root.mkdir()
        with BACKENDS[request.param](root) as fs:
            yield fs, root


def makefs(root: Path, layout: list[str]) -> None:
    """Go's makefs: ``d/`` a directory, ``f`` a file holding its own name, ``a => b`` a
    link; ``$ABS`` is the root's absolute path."""
    clear(root)
    os.chmod(root, 0o755)  # (a chmod of "." must not carry over to the next case)
    for ent in layout:
        ent = ent.replace("$ABS", str(root))
        base, sep, link = ent.partition(" => ")
        (root / base).parent.mkdir(parents=True, exist_ok=True)
        if sep:
            os.symlink(link, root / base)
        elif ent.endswith("/"):
            (root / ent).mkdir(parents=True, exist_ok=True)
        else:
            (root / ent).write_text(ent)


# --------------------------------------------------------------------------------------
# rootTestCases


class Case(NamedTuple):
    name: str
    fs: list[str]
    open: str
    target: str = ""
    ltarget: str = ""
    want: str = "ok"  # "ok", "escape" (Go: wantError), or the errno of an alwaysFails case


CASES: list[Case] = [
    Case("plain path", [], "target", "target"),
    Case("path in directory", ["a/b/c/"], "a/b/c/target", "a/b/c/target"),
    Case("symlink", ["link => target"], "link", "target", "link"),
    Case("symlink dotdot slash", ["link => ../"], "link", "", "link", "escape"),
    Case("symlink ending in slash", ["dir/", "link => dir/"], "link/target", "dir/target"),
    Case("slash after symlink to file", ["link => ../ROOT/target"], "link/", "target", "", "escape"),
    Case("slash after symlink to dir", ["link => ../ROOT/target", "target/"], "link/", "", "", "escape"),
    Case("symlink dotdot dotdot slash", ["dir/link => ../../"], "dir/link", "", "dir/link", "escape"),
    Case("symlink chain", ["link => a/b/c/target", "a/b => e", "a/e => ../f", "f => g/h/i", "g/h/i => ..", "g/c/"],
         "link", "g/c/target", "link"),
    Case("path with dot", ["a/b/"], "./a/./b/./target", "a/b/target"),
    Case("path with dotdot", ["a/b/"], "a/../a/b/../../a/b/../b/target", "a/b/target"),
    Case("path with dotdot slash", [], "../", "", "", "escape"),
    Case("path with dotdot dotdot slash", ["a/"], "a/../../", "", "", "escape"),
    Case("dotdot no symlink", ["a/"], "a/../target", "target"),
    Case("dotdot after symlink", ["a => b/c", "b/c/"], "a/../target", "b/target"),
    Case("dotdot before symlink", ["a => b/c", "b/c/"], "b/../a/target", "b/c/target"),
    Case("symlink ends in dot", ["a => b/.", "b/"], "a/target", "b/target"),
    Case("directory does not exist", [], "a/file", "", "", "ENOENT"),
    Case("empty path", [], "", "", "", "ENOENT"),
    Case("symlink cycle", ["a => a"], "a", "", "a", "ELOOP"),
    Case("path escapes", [], "../ROOT/target", "target", "", "escape"),
    Case("long path escapes", ["a/"], "a/../../ROOT/target", "target", "", "escape"),
    Case("absolute symlink", ["link => $ABS/target"], "link", "target", "link", "escape"),
    Case("relative symlink", ["link => ../ROOT/target"], "link", "target", "link", "escape"),
    Case("symlink chain escapes", ["link => a/b/c/target", "a/b => e", "a/e => ../../ROOT", "c/"],
         "link", "c/target", "link", "escape"),
]

# Where beneathd deliberately answers otherwise than Go's os.Root on Linux: (op, case) ->
# (beneathd's answer, why).  Summed up in docs/SECURITY.md, "Peers' tables (issue 14)".
FINAL_LINK = "acts on a final link itself (DESIGN.md); Go follows it"
SLASH = "rm never follows a link, also not with a trailing slash (ENOTDIR); Go's RemoveAll strips the slash"
REGULAR = "open and read_file give file objects over regular files only (DESIGN.md)"
ATOMIC = "write_file is an atomic replace (a rename over the name, whatever it is)"
LEXICAL = "pathlib.Path drops '.' components lexically; beneathd resolves them as the kernel does"
RM_F = "rm(force=True) ignores a missing path only (README), not ENOTDIR as rm -f does"
LINK_NOREPLACE = "link never replaces (os.link); Go's LinkTo test runs Rename"
RMDIR = "rmdir is os.rmdir: not for a link (Go's Remove unlinks it)"
DIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    # chmod never follows a final link: a link cannot be chmodded on Linux (Go CVE-2026-32282)
    **{("chmod", c.name): ("EOPNOTSUPP", FINAL_LINK) for c in CASES if c.ltarget},
    # utime sets the link's own times
    **{("utime", c.name): ("ok", FINAL_LINK) for c in CASES if c.ltarget},
    **{("remove_dir", c.name): ("ENOTDIR", RMDIR) for c in CASES if c.ltarget},
    **{("link_to", c.name): ("EEXIST", LINK_NOREPLACE) for c in CASES if c.ltarget},
    ("remove_all", "slash after symlink to file"): ("ENOTDIR", SLASH),
    ("remove_all", "slash after symlink to dir"): ("ENOTDIR", SLASH),
}


def _expect(op: str, c: Case) -> str:
    """beneathd's answer for ``op`` on case ``c``, from Go's rules (before DIFFERENCES)."""
    on_link = bool(c.ltarget)
    if op in ("lstat", "rename_from", "link_from", "remove_file", "remove_dir", "rename_to", "utime", "chmod",
              "remove_all", "link_to") and on_link:
        return "ok"
    if op in ("mkdir", "mkdir_all", "symlink") and on_link:
        return "EEXIST"
    if op == "readlink":
        return "ok" if on_link else ("escape" if c.want == "escape" else "error")
    if c.name.startswith("slash after symlink") and op not in ("open_file", "open_dir", "stat", "lstat", "chmod",
                                                                   "utime", "readlink"):
        # "link/" with the link pointing out: what would act on the link's target is refused
        # before following it (EEXIST, EISDIR, ENOTDIR, as os says of "link/"), never done
        # or refused as an escape (tests/test_escape.py's class T); Go says "error" too
        return "fails"
    if op == "mkdir_all" and c.name == "directory does not exist":
        return "ok"
    if op == "remove_all" and c.want == "ENOENT":
        return "ok"  # rm -rf: a missing path is no error
    return c.want


def _prepare(op: str, root: Path, c: Case) -> None:
    """What Go's test writes at the target before the call."""
    t = root / c.target if c.target else None
    if op in ("open_file", "rename_from", "link_from") and t:
        t.write_bytes(b"target")
    elif op in ("stat", "lstat") and t and not (op == "lstat" and c.ltarget):
        t.write_bytes(b"content")
    elif op == "open_dir" and t:
        t.mkdir()
        (t / "found").write_bytes(b"")
    elif op == "chmod" and t:
        t.write_bytes(b"")
        os.chmod(t, 0)
    elif op == "utime" and t:
        t.write_bytes(b"")
    elif op == "remove_file" and t and not c.ltarget:
        t.write_bytes(b"")
    elif op == "remove_dir" and t and not c.ltarget:
        t.mkdir()
    elif op == "remove_all" and t and not c.ltarget:
        t.mkdir()
        (t / "file").write_bytes(b"")
    elif op in ("rename_to", "link_to"):
        (root / "source").write_bytes(b"target")


def _call(op: str, fs: Any, c: Case) -> Any:
    p = c.open
    if op == "open_file":
        return fs.read_file(p)
    if op == "open_dir":
        return fs.listdir(p)
    if op == "create":
        with fs.open(p, "w") as f:
            f.write("target")
        return None
    if op == "write_file":
        return fs.write_file(p, b"target")
    if op == "chmod":
        return fs.chmod(p, 0o666)
    if op == "utime":
        return fs.utime(p, ns=(1_000_000_000, 2_000_000_000))
    if op == "mkdir":
        return fs.mkdir(p)
    if op == "mkdir_all":
        return fs.mkdir(p, parents=True)
    if op == "remove_file":
        return fs.unlink(p)
    if op == "remove_dir":
        return fs.rmdir(p)
    if op == "remove_all":
        return fs.rm(p, recursive=True, force=True)
    if op == "stat":
        return fs.stat(p)
    if op == "lstat":
        return fs.lstat(p)
    if op == "readlink":
        return fs.readlink(p)
    if op == "rename_from":
        return fs.rename(p, "destination")
    if op == "link_from":
        return fs.link(p, "destination")
    if op == "rename_to":
        return fs.rename("source", p)
    if op == "link_to":
        return fs.link("source", p)
    if op == "symlink":
        return fs.symlink("linktarget", p)
    raise AssertionError(op)  # pragma: no cover


def _after(op: str, root: Path, c: Case, result: Any, before: dict[str, Any]) -> str | None:
    """Go's checks after a successful call; None when they hold."""
    t = root / c.target if c.target else None
    lt = root / c.ltarget if c.ltarget else None
    if op == "open_file" and result != b"target":
        return f"read {result!r}"
    if op == "open_dir" and result != ["found"]:
        return f"listed {result!r}"
    if op in ("create", "write_file") and (t is None or t.read_bytes() != b"target"):
        return "target not written"
    if op == "chmod" and t and stat.S_IMODE(os.stat(t).st_mode) != 0o666:
        return "mode not set"
    if op == "utime":
        if lt is not None:
            if os.lstat(lt).st_mtime_ns != 2_000_000_000:
                return "the link's own times not set"
            if t and t.exists() and os.stat(t).st_mtime_ns == 2_000_000_000:
                return "the link's target was touched"
        elif t and os.stat(t).st_mtime_ns != 2_000_000_000:
            return "mtime not set"
    if op in ("mkdir", "mkdir_all") and t and not (t.is_dir() and not t.is_symlink()):
        return "no directory made"
    if op in ("remove_file", "remove_dir", "remove_all") and (lt or t) and os.path.lexists(lt or t):  # type: ignore[arg-type]
        return "still there"
    if op in ("stat", "lstat") and not c.ltarget and result.st_size != len("content"):
        return f"size {result.st_size}"
    if op == "lstat" and c.ltarget and not stat.S_ISLNK(result.st_mode):
        return "not the link"
    if op == "readlink" and result != os.readlink(root / c.ltarget):
        return f"readlink {result!r}"
    if op in ("rename_from", "link_from"):
        dst = root / "destination"
        if c.ltarget:
            if os.readlink(dst) != before["link"]:
                return "destination is not the link"
        elif dst.read_bytes() != b"target" or dst.is_symlink():
            return "destination is not the file"
        if op == "rename_from" and os.path.lexists(lt or t):  # type: ignore[arg-type]
            return "source still there"
    if op in ("rename_to", "link_to"):
        where = root / (c.ltarget or c.target)
        if where.read_bytes() != b"target":
            return "not moved there"
    if op == "symlink" and t and os.readlink(t) != "linktarget":
        return "link text"
    return None


GO_OPS = ["open_file", "open_dir", "create", "write_file", "chmod", "utime", "mkdir", "mkdir_all",
          "remove_file", "remove_dir", "remove_all", "stat", "lstat", "readlink", "rename_from", "link_from",
          "rename_to", "link_to", "symlink"]


def _matches(got: str, want: str) -> bool:
    if want == "error":
        return got not in ("ok", "escape")
    if want == "fails":
        return got != "ok"
    if want == "EOPNOTSUPP":
        return got in ("EOPNOTSUPP", "ENOTSUP")
    return got == want


@pytest.mark.parametrize("op", GO_OPS)
def test_root_cases(tfs: tuple[Any, Path], op: str) -> None:
    fs, root = tfs
    failures = []
    for c in CASES:
        makefs(root, c.fs)
        _prepare(op, root, c)
        before = {"link": os.readlink(root / c.ltarget) if c.ltarget else None}
        outside = tree(root.parent)
        inside = tree(root)
        want = DIFFERENCES.get((op, c.name), (_expect(op, c), ""))[0]
        got, result, exc = attempt(lambda: _call(op, fs, c))
        if not _matches(got, want):
            failures.append(f"{op}[{c.name}] {c.open!r}: got {got} ({exc}), want {want}")
        elif got != "ok" and tree(root) != inside:
            failures.append(f"{op}[{c.name}] {c.open!r}: failed with {got} but changed the tree")
        elif got == "ok" and (bad := _after(op, root, c, result, before)):
            failures.append(f"{op}[{c.name}] {c.open!r}: {bad}")
        # nothing beside the root changes (Go's escaping cases aim at ../ROOT, the root itself)
        outside_now = tree(root.parent)
        changed = [e for e in set(outside_now) ^ set(outside) if not e[0].startswith("ROOT")]
        if changed:
            failures.append(f"{op}[{c.name}]: changed outside the root: {changed}")
    assert not failures, "\n" + "\n".join(failures)


def test_root_cases_shape() -> None:
    assert len(CASES) == 25
    names = {c.name for c in CASES}
    assert len(names) == 25
    for (op, name), (_, why) in DIFFERENCES.items():
        assert op in GO_OPS and name in names and why


# --------------------------------------------------------------------------------------
# rootConsistencyTestCases: the same answer as plain os on the same path


class CCase(NamedTuple):
    name: str
    fs: list[str]
    open: str
    special: str = ""  # "unreadable", "socket", "search-only", "search-only-other"


CCASES: list[CCase] = [
    CCase("file", ["target"], "target"),
    CCase("dir slash dot", ["target/file"], "target/."),
    CCase("dot", ["file"], "."),
    CCase("file slash dot", ["target"], "target/."),
    CCase("dir slash", ["target/file"], "target/"),
    CCase("dot slash", ["file"], "./"),
    CCase("file slash", ["target"], "target/"),
    CCase("file in path", ["file"], "file/target"),
    CCase("directory in path missing", [], "dir/target"),
    CCase("target does not exist", [], "target"),
    CCase("symlink slash", ["target/file", "link => target"], "link/"),
    CCase("symlink slash dot", ["target/file", "link => target"], "link/."),
    CCase("unresolved symlink", ["link => target"], "link"),
    CCase("resolved symlink", ["link => target", "target"], "link"),
    CCase("dotdot in path after symlink", ["a => b/c", "b/c/", "b/target"], "a/../target"),
    CCase("symlink to dir ends in slash", ["dir/", "link => dir/"], "link"),
    CCase("symlink to file ends in slash", ["file", "link => file/"], "link"),
    CCase("long file name", [], "a" * 500),
    CCase("unreadable directory", ["dir/target"], "dir/target", "unreadable"),
    CCase("unix domain socket target", [], "a", "socket"),
    CCase("unix domain socket in path", [], "a/b", "socket"),
    CCase("question mark", [], "?"),
    CCase("nul byte", [], "\x00"),
    # beyond Go: search-only directories (no read bit): 0311 (write and search), 0111 (search only)
    CCase("search-only directory: file", ["dir/target", "dir/sub/f"], "dir/target", "search-only"),
    CCase("search-only directory: subdir", ["dir/target", "dir/sub/f"], "dir/sub", "search-only"),
    CCase("search-only directory: itself", ["dir/target", "dir/sub/f"], "dir", "search-only"),
    CCase("search-only directory: new name", ["dir/target", "dir/sub/f"], "dir/new", "search-only"),
    CCase("execute-only directory: file", ["dir/target", "dir/sub/f"], "dir/target", "execute-only"),
    CCase("execute-only directory: new name", ["dir/target", "dir/sub/f"], "dir/new", "execute-only"),
]
NOBODY_CASES = [c for c in CCASES if c.special in ("unreadable", "search-only", "execute-only")]


def build_consistency(d: Path, c: CCase, owner: tuple[int, int] | None = None) -> list[socket.socket]:
    makefs(d, c.fs)
    socks = []
    if c.special == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        here = os.getcwd()
        os.chdir(d)  # bind by a short relative name (sun_path is 108 bytes)
        try:
            s.bind("a")
        finally:
            os.chdir(here)
        socks.append(s)
    if owner:
        for dp, dns, fns in os.walk(d):
            for n in dns + fns:
                os.lchown(os.path.join(dp, n), *owner)
        os.lchown(d, *owner)
    if c.special == "unreadable":
        os.chmod(d / "dir", 0)
    elif c.special == "search-only":
        os.chmod(d / "dir", 0o311)
    elif c.special == "execute-only":
        os.chmod(d / "dir", 0o111)
    return socks


def _norm_stat(st: os.stat_result) -> tuple[Any, ...]:
    return (kind(st), st.st_size, oct(stat.S_IMODE(st.st_mode)), st.st_nlink)


def _open_like_go(read: Callable[[], Any], listdir: Callable[[], Any]) -> Any:
    """Go's Open + ReadAll, or Readdirnames for a directory."""
    try:
        return ("file", read())
    except IsADirectoryError:
        return ("dir", sorted(listdir()))


def _read(q: str) -> bytes:
    with open(q, "rb") as f:  # the builtin open: no lexical clean-up of the path (pathlib has one)
        return f.read()


def _write(q: str) -> None:
    with open(q, "wb") as f:
        f.write(b"file contents")


def _create(opener: Callable[[], Any]) -> None:
    with opener() as f:
        f.write("file contents")


def _chmod_cycle(chmod: Callable[[int], Any], lstat: Callable[[], Any]) -> Any:
    out = []
    for m in (0o555, 0o777):
        chmod(m)
        out.append(_norm_stat(lstat()))
    return out


def _move(move: Callable[[], Any], lstat: Callable[[], Any]) -> Any:
    move()
    return _norm_stat(lstat())


def _rm_rf(p: str) -> None:
    r = subprocess.run(["rm", "-rf", "--", p], capture_output=True)
    if r.returncode:
        raise OSError(0, r.stderr.decode().strip())


# op -> (beneathd's call, plain os's call on the same path); ``o`` is the path's other
# name for the moves ("other", in the same tree), ``q`` the os path of the case
def consistency_ops() -> dict[str, tuple[Callable[[Any, str, str], Any], Callable[[str, str], Any]]]:
    return {
        "open": (lambda fs, p, o: _open_like_go(lambda: fs.read_file(p), lambda: fs.listdir(p)),
                 lambda q, o: _open_like_go(lambda: _read(q), lambda: os.listdir(q))),
        "create": (lambda fs, p, o: _create(lambda: fs.open(p, "w")), lambda q, o: _create(lambda: open(q, "w"))),
        "write_file": (lambda fs, p, o: fs.write_file(p, b"file contents"),
                       lambda q, o: _write(q)),
        "chmod": (lambda fs, p, o: _chmod_cycle(lambda m: fs.chmod(p, m), lambda: fs.lstat(p)),
                  lambda q, o: _chmod_cycle(lambda m: os.chmod(q, m), lambda: os.lstat(q))),
        "mkdir": (lambda fs, p, o: fs.mkdir(p), lambda q, o: os.mkdir(q)),
        "mkdir_all": (lambda fs, p, o: fs.mkdir(p, parents=True, exist_ok=True),
                      lambda q, o: Path(q).mkdir(parents=True, exist_ok=True)),
        "unlink": (lambda fs, p, o: fs.unlink(p), lambda q, o: os.unlink(q)),
        "rmdir": (lambda fs, p, o: fs.rmdir(p), lambda q, o: os.rmdir(q)),
        "remove_all": (lambda fs, p, o: fs.rm(p, recursive=True, force=True), lambda q, o: _rm_rf(q)),
        "stat": (lambda fs, p, o: _norm_stat(fs.stat(p)), lambda q, o: _norm_stat(os.stat(q))),
        "lstat": (lambda fs, p, o: _norm_stat(fs.lstat(p)), lambda q, o: _norm_stat(os.lstat(q))),
        "readlink": (lambda fs, p, o: fs.readlink(p), lambda q, o: os.readlink(q)),
        "rename_from": (lambda fs, p, o: _move(lambda: fs.rename(p, "other"), lambda: fs.lstat("other")),
                        lambda q, o: _move(lambda: os.rename(q, o), lambda: os.lstat(o))),
        "rename_to": (lambda fs, p, o: _move(lambda: fs.rename("other", p), lambda: fs.lstat(p)),
                      lambda q, o: _move(lambda: os.rename(o, q), lambda: os.lstat(q))),
        "link_from": (lambda fs, p, o: _move(lambda: fs.link(p, "other"), lambda: fs.lstat("other")),
                      lambda q, o: _move(lambda: os.link(q, o, follow_symlinks=False), lambda: os.lstat(o))),
        "link_to": (lambda fs, p, o: _move(lambda: fs.link("other", p), lambda: fs.lstat(p)),
                    lambda q, o: _move(lambda: os.link(o, q), lambda: os.lstat(q))),
        "symlink": (lambda fs, p, o: fs.symlink("linktarget", p), lambda q, o: os.symlink("linktarget", q)),
    }


# Where beneathd deliberately differs from os: (op, case) -> (what beneathd gives, why)
CDIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    ("open", "unix domain socket target"): ("EPERM", REGULAR),  # os: ENXIO
    ("create", "unix domain socket target"): ("EPERM", REGULAR),  # os: ENXIO
    # chmod acts on a final link, which Linux cannot chmod; os.chmod follows it
    # write_file replaces the name atomically (a rename), whatever it was
    ("write_file", "unix domain socket target"): ("ok", ATOMIC),  # os: ENXIO

    # pathlib's mkdir drops a "." component lexically ("target/." is "target" to it)
    ("mkdir_all", "file slash dot"): ("ENOTDIR", LEXICAL),  # pathlib: EEXIST
    # rm's force ignores a missing path only, not ENOTDIR (rm -f does), and rm never
    # follows a link, also not "link/" (GNU rm -r empties the target)
    ("remove_all", "file slash dot"): ("ENOTDIR", RM_F),
    ("remove_all", "file slash"): ("ENOTDIR", RM_F),
    ("remove_all", "file in path"): ("ENOTDIR", RM_F),
    ("remove_all", "unix domain socket in path"): ("ENOTDIR", RM_F),
    ("remove_all", "symlink slash"): ("ENOTDIR", SLASH),
    ("chmod", "resolved symlink"): ("EOPNOTSUPP", FINAL_LINK),
    ("chmod", "unresolved symlink"): ("EOPNOTSUPP", FINAL_LINK),
    ("chmod", "symlink to dir ends in slash"): ("EOPNOTSUPP", FINAL_LINK),
    ("chmod", "symlink to file ends in slash"): ("EOPNOTSUPP", FINAL_LINK),
}
# ... and where the permission bits bind (as nobody): write_file makes a temporary name in
# the file's directory, which a directory without the write bit (0111) refuses, where os
# writes the existing file in place
NOBODY_CDIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    ("write_file", "execute-only directory: file"): ("EACCES", ATOMIC),
}
# Not run, as in Go: removing the root itself ("." and "./").
SKIP = {("unlink", "dot"), ("unlink", "dot slash"), ("rmdir", "dot"), ("rmdir", "dot slash"),
        ("remove_all", "dot"), ("remove_all", "dot slash")}


def _same(fs: Any, root: Path, ref: Path, c: CCase, op: str) -> str | None:
    """None if beneathd and os agree on ``op`` for case ``c`` (trees already built)."""
    ours_fn, os_fn = consistency_ops()[op]
    if op in ("rename_to", "link_to"):
        (root / "other").write_bytes(b"other")
        (ref / "other").write_bytes(b"other")
    got, res, exc = attempt(lambda: ours_fn(fs, c.open, "other"))
    q = str(ref) + "/" + c.open
    ogot, ores, oexc = attempt(lambda: os_fn(q, str(ref / "other")))
    diffs = CDIFFERENCES if os.geteuid() == 0 else CDIFFERENCES | NOBODY_CDIFFERENCES
    if (op, c.name) in diffs:
        want = diffs[(op, c.name)][0]
        if not _matches(got, want):
            return f"{op}[{c.name}]: got {got} ({exc}), want the documented {want} (os: {ogot})"
        return None
    if op == "remove_all" and ogot != "ok":
        ogot = "error"  # rm -rf says no errno
        if got not in ("ok", "escape"):
            got = "error"
    if got != ogot or res != ores:
        return f"{op}[{c.name}] {c.open[:40]!r}: beneathd {got} {res!r} ({exc}); os {ogot} {ores!r} ({oexc})"
    if exc is not None and oexc is not None and type(exc) is not type(oexc) and op != "remove_all":
        return f"{op}[{c.name}]: beneathd raised {type(exc).__name__}, os {type(oexc).__name__}"
    if isinstance(exc, OSError) and c.open not in (exc.filename, exc.filename2):
        return f"{op}[{c.name}]: the error names {exc.filename!r}/{exc.filename2!r}, not the caller's path"
    if tree(root) != tree(ref):
        return f"{op}[{c.name}]: trees differ after the call:\n  {tree(root)}\n  {tree(ref)}"
    return None


C_OPS = sorted(consistency_ops())


def run_consistency(fs: Any, root: Path, ref: Path, cases: list[CCase], ops: list[str],
                    owner: tuple[int, int] | None = None) -> list[str]:
    failures = []
    for op in ops:
        for c in cases:
            if (op, c.name) in SKIP:
                continue
            socks = build_consistency(root, c, owner) + build_consistency(ref, c, owner)
            try:
                if bad := _same(fs, root, ref, c, op):
                    failures.append(bad)
            finally:
                for s in socks:
                    s.close()
                for d in (root, ref):
                    for sub in ("dir",):
                        if (d / sub).is_dir() and not (d / sub).is_symlink():
                            os.chmod(d / sub, 0o700)
    return failures


@pytest.mark.parametrize("op", C_OPS)
def test_consistency(tfs: tuple[Any, Path], op: str) -> None:
    fs, root = tfs
    ref = root.parent / "REF"
    ref.mkdir()
    try:
        failures = run_consistency(fs, root, ref, CCASES, [op])
    finally:
        shutil.rmtree(ref, ignore_errors=True)
    assert not failures, "\n" + "\n".join(failures)


def test_consistency_shape() -> None:
    assert len(CCASES) == 29
    assert len({c.name for c in CCASES}) == len(CCASES)
    assert len([c for c in CCASES if "-only" not in c.name]) == 23


def _as_nobody(base: Path) -> dict[str, list[str]]:
    """Run the permission cases over every backend in a forked child that became nobody
    (no exec: the interpreter lives where nobody may not read), the result as JSON."""
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(r)
            signal.alarm(120)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            out = {}
            for name in sorted(BACKENDS):
                root, ref = base / name / "ROOT", base / name / "REF"
                with BACKENDS[name](root) as fs:
                    out[name] = run_consistency(fs, root, ref, NOBODY_CASES, C_OPS, (nobody.pw_uid, nobody.pw_gid))
            os.write(w, json.dumps(out).encode())
            status = 0
        except BaseException as e:  # noqa: BLE001
            os.write(w, json.dumps({"child-error": [repr(e)]}).encode())
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while b := os.read(r, 65536):
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"child-error": ["no output"]}')  # type: ignore[no-any-return]


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become nobody")
def test_consistency_as_nobody() -> None:
    """Unreadable and search-only directories, as a user the permission bits bind: every
    backend under nobody gives what os gives nobody (search-only directories are
    traversed, resolved with O_PATH, as path-based tools do; listing them is EACCES)."""
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="beneathd-peers-"))
    try:
        os.chmod(base, 0o755)
        for name in BACKENDS:
            for d in ("ROOT", "REF"):
                (base / name / d).mkdir(parents=True)
                os.chown(base / name / d, nobody.pw_uid, nobody.pw_gid)
        out = _as_nobody(base)  # the child builds every tree itself, so nobody owns them
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    assert set(out) == set(BACKENDS), out
    failures = [f"{b}: {f}" for b, fs in sorted(out.items()) for f in fs]
    assert not failures, "\n" + "\n".join(failures)


# --------------------------------------------------------------------------------------
# Go's "nul byte" case below the clients: a peer that sends a NUL in a path itself


def test_nul_byte_from_a_raw_peer_is_refused_not_truncated(tmp_path: Path) -> None:
    """The clients refuse a NUL as os does (ValueError, the consistency table); a peer that
    puts one on the wire anyway gets EINVAL for every path and text parameter of every
    method (the daemon logs "bad request"), and nothing is done with the path cut at the NUL."""
    import msgpack

    from backends import server_thread
    from beneathd.protocol.methods import METHODS, REQUIRED

    root = tmp_path / "root"
    root.mkdir()
    (root / "x").write_bytes(b"x")
    before = tree(root)
    samples = {"path": b"x", "text": b"t", "int": 0, "bool": False, "data": b"d", "mode": "r", "float": 1.0}
    with server_thread(root) as path:
        msgid = 0
        sent = 0
        for m in METHODS.values():
            if m.internal or m.daemon or m.streams:
                continue
            params = m.wire_params
            for i, p in enumerate(params):
                if p.type not in ("path", "text"):
                    continue
                args = []
                for q in params:
                    if q is p:
                        args.append(b"x\x00evil")
                    elif q.default is not REQUIRED:
                        args.append(q.default)
                    else:
                        args.append(samples.get(q.type, b"x"))
                msgid += 1
                with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:  # (bad requests are
                    s.connect(path)                    # counted against a connection: one each)
                    s.settimeout(10)
                    s.send(b"\x00" + msgpack.packb([0, msgid, m.name, args], use_bin_type=True))
                    reply = msgpack.unpackb(s.recv(1 << 20)[1:], raw=False)
                assert reply[0] == 1 and reply[1] == msgid, reply
                err = reply[2]
                assert err is not None and err["errno"] == errno.EINVAL, (m.name, p.name, reply)
                sent += 1
        assert sent >= 30
    assert tree(root) == before
