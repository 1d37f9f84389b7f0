"""One escape table through every operation (in the style of Go's ``os/root_test.go``).

Each operation (and each path slot of a two-path operation) is run against every case of
one table of hostile paths.  A case is one of:

``E``  the path itself leaves the root before (or at) its last step: absolute paths, ``..``,
       ``a/../../x``, an interior symlink (relative, absolute, chained, magic ``/proc``)
       pointing outside.  Every operation must raise ``EscapeError``.
``T``  a trailing slash after a final symlink that points outside (Go CVE-2026-39822):
       nothing may be followed out; operations that follow raise ``EscapeError``, the others
       raise an ``OSError`` (as ``os`` would) and never succeed.
``L``  the final component is an in-tree symlink pointing outside (existing target),
``D``  the same, dangling (so a create operation following it would create outside).
       Operations that follow a final link (DESIGN.md) raise ``EscapeError``; operations on
       the link itself act on the link (and only on it); creating over it is
       ``FileExistsError``; ``chmod`` of a link is an ``OSError`` (Go CVE-2026-32282).

For every single call, the sentinel tree outside must stay byte-for-byte unchanged
(names, modes, sizes, mtimes, link counts, owners, contents).  One test per operation slot
runs the whole table and reports every deviation at once.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

import pytest

from _util import IS_ROOT, EscapeError, describe
from conftest import snapshot
from beneathd.protocol.methods import METHODS

# --------------------------------------------------------------------------------------
# the tree every case runs in


def build_outside(outside: Path) -> None:
    """(Re)create the sentinel tree exactly as conftest's ``outside`` fixture does."""
    if outside.exists() or outside.is_symlink():
        if outside.is_symlink() or not outside.is_dir():
            outside.unlink()
        else:
            shutil.rmtree(outside)
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "file").write_bytes(b"inner\n")
    os.chmod(outside / "secret", 0o640)


def clear_dir(d: Path) -> None:
    for name in os.listdir(d):
        p = d / name
        if p.is_symlink() or not p.is_dir():
            p.unlink()
        else:
            shutil.rmtree(p)


def build_tree(root: Path, outside: Path) -> None:
    """The in-root fixture tree: plain files and dirs plus links pointing out."""
    clear_dir(root)
    (root / "f").write_bytes(b"inside\n")
    (root / "d").mkdir()
    (root / "d" / "g").write_bytes(b"g\n")
    (root / "a").mkdir()
    (root / "a" / "sub").mkdir()
    out_rel = os.path.relpath(outside, root)  # "../outside"
    links = {
        "lo": out_rel,                                  # relative, to a dir outside
        "lao": str(outside),                            # absolute, to a dir outside
        "lf": f"{out_rel}/secret",                      # relative, to a file outside
        "laf": str(outside / "secret"),                 # absolute, to a file outside
        "dl": f"{out_rel}/new",                         # dangling, relative, outside
        "dla": str(outside / "new"),                    # dangling, absolute, outside
        "c1": "c2",                                     # chain c1 -> c2 -> a/c3 -> ../lo -> out
        "c2": "a/c3",
        "a/c3": "../lo",
        "cf1": "cf2",                                   # chain ending at a file outside
        "cf2": "lf",
        "dc1": "dl",                                    # chain ending dangling outside
        "a/up": f"../{out_rel}",                        # a link one level down
        "a/sub/l": f"../../{out_rel}/secret",
        "proot": "/proc/self/root",                     # magic links
        "pcwd": "/proc/self/cwd",
        "pfd": "/proc/self/fd",
    }
    for name, target in links.items():
        os.symlink(target, root / name)


def cases(root: Path, outside: Path) -> list[tuple[str, str, str]]:
    """(case name, class, path) for the whole table."""
    abs_out = str(outside)
    return [
        # -- E: the path itself escapes -------------------------------------------------
        ("abs_secret", "E", f"{abs_out}/secret"),
        ("abs_new", "E", f"{abs_out}/new"),
        ("abs_dir", "E", abs_out),
        ("abs_inside_root", "E", str(root / "f")),      # a leading "/" is refused outright
        ("slash", "E", "/"),
        ("dotdot", "E", ".."),
        ("dotdot_slash", "E", "../"),
        ("dotdot_secret", "E", "../outside/secret"),
        ("dotdot_new", "E", "../outside/new"),
        ("dotdot_dir", "E", "../outside/dir"),
        ("a_dotdot2_secret", "E", "a/../../outside/secret"),
        ("a_dotdot2_new", "E", "a/../../outside/new"),
        ("dot_dotdot_dir", "E", "./../outside/dir"),
        ("deep_dotdot", "E", "a/sub/../../../outside/dir/file"),
        ("lo_secret", "E", "lo/secret"),
        ("lo_new", "E", "lo/new"),
        ("lo_dir", "E", "lo/dir"),
        ("lo_dir_file", "E", "lo/dir/file"),
        ("lo_dir_new", "E", "lo/dir/new"),
        ("lo_dot", "E", "lo/."),
        ("lo_dir_dotdot", "E", "lo/dir/.."),
        ("lao_secret", "E", "lao/secret"),
        ("lao_new", "E", "lao/new"),
        ("chain_secret", "E", "c1/secret"),
        ("chain_new", "E", "c1/new"),
        ("sub_up_secret", "E", "a/up/secret"),
        ("sub_up_new", "E", "a/up/new"),
        ("dl_new", "E", "dl/new"),
        ("dla_new", "E", "dla/new"),
        ("proot_secret", "E", f"proot{abs_out}/secret"),
        ("proot_new", "E", f"proot{abs_out}/new"),
        ("pcwd_x", "E", "pcwd/x"),
        ("pfd_0", "E", "pfd/0"),
        # -- T: trailing slash after a final link out (Go CVE-2026-39822) ----------------
        ("lo_slash", "T", "lo/"),
        ("lao_slash", "T", "lao/"),
        ("lf_slash", "T", "lf/"),
        ("dl_slash", "T", "dl/"),
        ("dla_slash", "T", "dla/"),
        ("chain_slash", "T", "c1/"),
        ("lo_slashslash", "T", "lo//"),
        # -- L: final component is a link pointing out ----------------------------------
        ("lo", "L", "lo"),
        ("lao", "L", "lao"),
        ("lf", "L", "lf"),
        ("laf", "L", "laf"),
        ("chain_dir", "L", "c1"),
        ("chain_file", "L", "cf1"),
        ("sub_l", "L", "a/sub/l"),
        ("proot", "L", "proot"),
        ("pcwd", "L", "pcwd"),
        # -- D: final component is a dangling link pointing out --------------------------
        ("dl", "D", "dl"),
        ("dla", "D", "dla"),
        ("dchain", "D", "dc1"),
    ]


# --------------------------------------------------------------------------------------
# every operation, each path slot separately; ``kind`` says what a final link out means

UID = 4242 if IS_ROOT else os.getuid()  # a chown that escaped must show in the snapshot
GID = 4243 if IS_ROOT else os.getgid()


def _open(mode: str, **kw: Any) -> Callable[[Any, Any], Any]:
    def fn(fs: Any, p: Any) -> None:
        f = fs.open(p, mode, **kw)
        try:
            if "w" in mode or "a" in mode or "+" in mode or "x" in mode:
                f.write(b"pwned" if "b" in mode else "pwned")
        finally:
            f.close()

    return fn


def _b(s: str, like: Any) -> Any:
    return os.fsencode(s) if isinstance(like, bytes) else s


# kinds: follow    - final link out is followed -> EscapeError
#        excl      - create-exclusive: EscapeError or FileExistsError
#        nofollow  - acts on the link itself and succeeds
#        exists    - creating over the link: FileExistsError
#        exists_or_escape - FileExistsError or EscapeError
#        notdir    - NotADirectoryError (rmdir of a link)
#        oserror   - any OSError (chmod of a link: Linux cannot)
OPS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "stat": ("follow", lambda fs, p: fs.stat(p)),
    "stat_nofollow": ("nofollow", lambda fs, p: fs.stat(p, follow_symlinks=False)),
    "lstat": ("nofollow", lambda fs, p: fs.lstat(p)),
    "exists": ("follow", lambda fs, p: fs.exists(p)),
    "listdir": ("follow", lambda fs, p: fs.listdir(p)),
    "scandir": ("follow", lambda fs, p: list(fs.scandir(p))),
    "readlink": ("nofollow", lambda fs, p: fs.readlink(p)),
    "du": ("nofollow", lambda fs, p: fs.du(p)),
    "walk": ("follow", lambda fs, p: list(fs.walk(p))),
    "watch": ("follow", lambda fs, p: fs.watch(p).close()),
    "watch_flat": ("follow", lambda fs, p: fs.watch(p, recursive=False).close()),
    "realpath": ("follow", lambda fs, p: fs.realpath(p)),
    "mkdir": ("exists", lambda fs, p: fs.mkdir(p)),
    "mkdir_parents": ("exists_or_escape", lambda fs, p: fs.mkdir(p, parents=True, exist_ok=True)),
    "mkdir_parents_below": ("follow", lambda fs, p: fs.mkdir(os.path.join(p, _b("x", p)), parents=True)),
    "unlink": ("nofollow", lambda fs, p: fs.unlink(p)),
    "unlink_missing_ok": ("nofollow", lambda fs, p: fs.unlink(p, missing_ok=True)),
    "rmdir": ("notdir", lambda fs, p: fs.rmdir(p)),
    "rename_src": ("nofollow", lambda fs, p: fs.rename(p, _b("renamed", p))),
    "rename_dst": ("nofollow", lambda fs, p: fs.rename(_b("f", p), p)),
    "rename_noreplace_dst": ("exists", lambda fs, p: fs.rename(_b("f", p), p, noreplace=True)),
    "exchange_a": ("nofollow", lambda fs, p: fs.exchange(p, _b("f", p))),
    "exchange_b": ("nofollow", lambda fs, p: fs.exchange(_b("f", p), p)),
    "move_src": ("nofollow", lambda fs, p: fs.move(p, _b("moved", p))),
    "move_dst": ("exists", lambda fs, p: fs.move(_b("f", p), p)),
    "move_dst_overwrite": ("nofollow", lambda fs, p: fs.move(_b("f", p), p, overwrite=True)),
    "link_src": ("nofollow", lambda fs, p: fs.link(p, _b("hardlink", p))),
    "link_dst": ("exists", lambda fs, p: fs.link(_b("f", p), p)),
    "symlink_path": ("exists", lambda fs, p: fs.symlink(_b("f", p), p)),
    "chmod": ("oserror", lambda fs, p: fs.chmod(p, 0o777)),
    "chown": ("nofollow", lambda fs, p: fs.chown(p, UID, GID)),
    "utime": ("nofollow", lambda fs, p: fs.utime(p, ns=(1_000_000_000, 1_000_000_000))),
    "utime_now": ("nofollow", lambda fs, p: fs.utime(p)),
    "truncate": ("follow", lambda fs, p: fs.truncate(p, 0)),
    "copy_file_src": ("follow", lambda fs, p: fs.copy_file(p, _b("copied", p))),
    "copy_file_dst": ("follow", lambda fs, p: fs.copy_file(_b("f", p), p)),
    "copy_file_dst_noover": ("excl", lambda fs, p: fs.copy_file(_b("f", p), p, overwrite=False)),
    "cp_src": ("follow", lambda fs, p: fs.cp(p, _b("copied", p), recursive=True)),
    "cp_dst": ("follow", lambda fs, p: fs.cp(_b("d", p), p, recursive=True)),
    "cp_file_dst": ("follow", lambda fs, p: fs.cp(_b("f", p), p)),
    "rm": ("nofollow", lambda fs, p: fs.rm(p)),
    "rm_rf": ("nofollow", lambda fs, p: fs.rm(p, recursive=True, force=True)),
    "mkfifo": ("exists", lambda fs, p: fs.mkfifo(p)),
    "read_file": ("follow", lambda fs, p: fs.read_file(p)),
    "write_file": ("follow", lambda fs, p: fs.write_file(p, b"pwned")),
    "open_r": ("follow", _open("r")),
    "open_rb": ("follow", _open("rb")),
    "open_w": ("follow", _open("w")),
    "open_wb": ("follow", _open("wb")),
    "open_a": ("follow", _open("a")),
    "open_rplus": ("follow", _open("r+")),
    "open_x": ("excl", _open("x")),
    "open_wb_atomic": ("follow", _open("wb", atomic=True)),
    "open_x_atomic": ("excl", _open("x", atomic=True)),
}


T_STRICT = {"stat", "stat_nofollow", "lstat", "exists", "listdir", "scandir", "realpath", "readlink", "du", "walk",
            "watch", "watch_flat", "cp_src", "mkdir_parents_below"}


def expected(op: str, kind: str, cls: str) -> set[str]:
    """The allowed outcomes (describe() strings, or 'success', or 'OSError:any')."""
    if cls == "E":
        return {"EscapeError"}
    if cls == "T":
        # reads that os would answer through "link/" must be refused as escapes; every
        # other operation may fail as os does on a trailing slash (EISDIR, ENOTDIR, EEXIST)
        return {"EscapeError"} if op in T_STRICT else {"EscapeError", "OSError:any"}
    return {
        "follow": {"EscapeError"},
        "excl": {"EscapeError", "FileExistsError(EEXIST)"},
        "nofollow": {"success"},
        "exists": {"FileExistsError(EEXIST)"},
        "exists_or_escape": {"FileExistsError(EEXIST)", "EscapeError"},
        "notdir": {"NotADirectoryError(ENOTDIR)"},
        "oserror": {"OSError:any"},
    }[kind]


def _ok(got_exc: BaseException | None, allowed: set[str]) -> bool:
    d = describe(got_exc)
    if d in allowed:
        return True
    return "OSError:any" in allowed and isinstance(got_exc, OSError)


def _filename_ok(exc: BaseException, p: Any, root: Path) -> str | None:
    """None if the error names the caller's path and never the root's absolute path."""
    if not isinstance(exc, OSError):
        return None
    names = [exc.filename, exc.filename2]
    if p not in names:
        return f"filename {exc.filename!r}/{exc.filename2!r} is not the caller's {p!r}"
    rootb = os.fsencode(str(root))
    for n in names:
        if n is None or n == p:
            continue
        nb = os.fsencode(n) if isinstance(n, str) else n
        if isinstance(nb, bytes) and rootb in nb:
            return f"error names the root's absolute path: {n!r}"
    if str(root) in str(exc) and str(root) not in os.fsdecode(p):
        return f"message reveals the root's absolute path: {exc}"
    return None


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ptype", ["str", "bytes"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_escape_table(fs: Any, root_dir: Path, outside: Path, op: str, ptype: str) -> None:
    kind, call = OPS[op]
    failures: list[str] = []
    base = snapshot(outside)
    for name, cls, path in cases(root_dir, outside):
        build_tree(root_dir, outside)
        p: Any = os.fsencode(path) if ptype == "bytes" else path
        try:
            call(fs, p)
            exc: BaseException | None = None
        except Exception as e:  # noqa: BLE001
            exc = e
        allowed = expected(op, kind, cls)
        if not _ok(exc, allowed):
            failures.append(f"{op}[{name}:{cls}] {path!r}: got {describe(exc)} ({exc}), want {sorted(allowed)}")
        elif exc is not None and not name.startswith("abs"):
            given = os.path.join(p, _b("x", p)) if op == "mkdir_parents_below" else p
            bad = _filename_ok(exc, given, root_dir)
            if bad:
                failures.append(f"{op}[{name}:{cls}] {path!r}: {bad}")
        after = snapshot(outside)
        if after != base:
            changed = sorted(set(after.items()) ^ set(base.items()))
            failures.append(f"{op}[{name}:{cls}] {path!r}: OUTSIDE CHANGED (escape!): {changed}")
            build_outside(outside)
            base = snapshot(outside)
    assert not failures, "\n" + "\n".join(failures)


class _Recorder:
    """Stands in for a backend: records which method a row calls and with what."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return _Inert()
        return call


class _Inert:
    def __iter__(self) -> Any:
        return iter(())

    def write(self, data: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _slots_hit(op: str) -> set[tuple[str, str]]:
    """(method, path parameter) pairs the row ``op`` puts the case's path into."""
    rec = _Recorder()
    sentinel = "SENTINEL-PATH"
    OPS[op][1](rec, sentinel)
    hit = set()
    for name, args, kwargs in rec.calls:
        assert name in METHODS, f"row {op} calls {name}, which is not in the method table"
        m = METHODS[name]
        bound = dict(zip((p.name for p in m.params), args)) | kwargs
        for pname, v in bound.items():
            if isinstance(v, str) and sentinel in v:
                hit.add((name, pname))
    return hit


def test_table_covers_every_path_of_every_method() -> None:
    """The set to cover is derived from the method table: every path parameter of every
    method gets the whole table of hostile paths (a new method with no row fails here)."""
    want = {(m.name, p.name) for m in METHODS.values() for p in m.params if p.type == "path"}
    covered: set[tuple[str, str]] = set()
    for op in OPS:
        hit = _slots_hit(op)
        assert hit, f"row {op} puts the case's path into no path parameter"
        covered |= hit
    assert want <= covered, sorted(want - covered)


# --------------------------------------------------------------------------------------
# named regressions


def test_chmod_through_final_link_out_cve_2026_32282(fs: Any, root_dir: Path, outside: Path) -> None:
    """chmod never follows a final link: Go's os.Root used fchmodat, which ignores NOFOLLOW."""
    build_tree(root_dir, outside)
    before = snapshot(outside)
    for p in ("lf", "laf", "cf1", "a/sub/l", "lo", "lao"):
        with pytest.raises(OSError):
            fs.chmod(p, 0o777)
    assert stat.S_IMODE(os.stat(outside / "secret").st_mode) == 0o640
    assert snapshot(outside) == before


def test_chmod_in_tree_link_leaves_target_untouched(fs: Any, root_dir: Path) -> None:
    (root_dir / "t").write_bytes(b"t")
    os.chmod(root_dir / "t", 0o644)
    os.symlink("t", root_dir / "l")
    with pytest.raises(OSError) as ei:
        fs.chmod("l", 0o777)
    assert ei.value.filename == "l"
    assert stat.S_IMODE(os.stat(root_dir / "t").st_mode) == 0o644


@pytest.mark.parametrize("op", ["mkdir", "write_file", "open_w", "open_x", "mkfifo", "symlink_path",
                                "copy_file_dst", "cp_dst", "mkdir_parents"])
@pytest.mark.parametrize("path", ["dl/", "dla/", "dc1/", "dl/x", "dl//"])
def test_trailing_slash_after_dangling_link_out_cve_2026_39822(
        fs: Any, root_dir: Path, outside: Path, op: str, path: str) -> None:
    """``mkdir("link/")`` and friends must not create the link's target outside."""
    build_tree(root_dir, outside)
    before = snapshot(outside)
    with pytest.raises(OSError):
        OPS[op][1](fs, path)
    assert not os.path.lexists(outside / "new")
    assert snapshot(outside) == before


def test_rm_r_of_trailing_slash_link_out_keeps_outside(fs: Any, root_dir: Path, outside: Path) -> None:
    """GNU ``rm -r link/`` empties the target; beneathd must not."""
    build_tree(root_dir, outside)
    before = snapshot(outside)
    for p in ("lo/", "lao/", "c1/", "lo/dir/", "lo/."):
        with pytest.raises(OSError):
            fs.rm(p, recursive=True, force=True)
    assert snapshot(outside) == before


def test_hard_link_source_outside(fs: Any, root_dir: Path, outside: Path) -> None:
    """No hard link to an outside file, directly, through a dir link, or via a final link."""
    build_tree(root_dir, outside)
    before = snapshot(outside)
    for src in ("../outside/secret", "lo/secret", "lao/secret", str(outside / "secret"),
                "c1/secret", f"proot{outside}/secret", "a/up/secret"):
        with pytest.raises(EscapeError):
            fs.link(src, "h")
        assert not os.path.lexists(root_dir / "h")
    # through a final symlink the *link* is hard-linked, never its target
    fs.link("lf", "h")
    assert os.path.islink(root_dir / "h")
    assert os.stat(outside / "secret").st_nlink == 1
    assert snapshot(outside) == before


def test_escape_error_shape(fs: Any, root_dir: Path, outside: Path) -> None:
    build_tree(root_dir, outside)
    for p in ("../outside/secret", b"../outside/secret", "lo/secret", "lf"):
        with pytest.raises(EscapeError) as ei:
            fs.read_file(p)
        e = ei.value
        assert isinstance(e, PermissionError)
        assert e.errno == errno.EXDEV
        assert e.filename == p
        assert "escape" in str(e).lower()
        assert str(root_dir) not in str(e)


def test_exists_escape_raises(fs: Any, root_dir: Path, outside: Path) -> None:
    build_tree(root_dir, outside)
    assert fs.exists("f") is True
    assert fs.exists("missing") is False
    assert fs.exists("d/missing/deeper") is False
    for p in ("..", "../outside/secret", "lo", "lo/secret", "dl", "lf", "/etc"):
        with pytest.raises(EscapeError):
            fs.exists(p)


def test_symlink_any_target_text_is_stored_not_followed(fs: Any, root_dir: Path, outside: Path) -> None:
    before = snapshot(outside)
    for i, target in enumerate([str(outside / "secret"), "../outside/new", "/proc/self/root", "../../.."]):
        fs.symlink(target, f"s{i}")
        assert os.readlink(root_dir / f"s{i}") == target
    assert snapshot(outside) == before


# --------------------------------------------------------------------------------------
# the root directory moved while held


def test_root_renamed_while_held(fs: Any, root_dir: Path, outside: Path, tmp_path: Path) -> None:
    """Operations keep working beneath the held fd and never touch the old name's new owner."""
    (root_dir / "keep").write_bytes(b"keep\n")
    moved = tmp_path / "moved"
    os.rename(root_dir, moved)
    # a new neighbour takes the old name
    root_dir.mkdir()
    (root_dir / "keep").write_bytes(b"impostor\n")
    impostor = snapshot(root_dir)
    before = snapshot(outside)

    assert fs.read_file("keep") == b"keep\n"
    fs.write_file("new", b"n")
    fs.mkdir("nd")
    fs.mkdir("p/q", parents=True)
    fs.symlink("keep", "sl")
    fs.rename("new", "new2")
    fs.copy_file("keep", "kc")
    fs.cp("nd", "nd2", recursive=True)
    fs.chmod("kc", 0o600)
    fs.utime("kc", ns=(5, 5))
    fs.truncate("kc", 1)
    fs.unlink("sl")
    fs.rm("p", recursive=True)
    with fs.open("o", "w") as f:
        f.write("o")
    assert sorted(fs.listdir(".")) == sorted(os.listdir(moved))
    assert set(fs.listdir(".")) == {"keep", "new2", "nd", "nd2", "kc", "o"}
    assert fs.realpath("keep") == "keep"
    for p in ("..", "../root/keep", "../moved/keep", str(moved / "keep"), str(root_dir / "keep")):
        with pytest.raises(EscapeError):
            fs.read_file(p)
    assert snapshot(root_dir) == impostor
    assert snapshot(outside) == before
    assert (moved / "kc").read_bytes() == b"k"


def test_root_replaced_by_link_to_outside_while_held(fs: Any, root_dir: Path, outside: Path,
                                                     tmp_path: Path) -> None:
    (root_dir / "secret").write_bytes(b"mine\n")
    moved = tmp_path / "moved"
    os.rename(root_dir, moved)
    os.symlink(outside, root_dir)  # the old name now leads outside
    before = snapshot(outside)
    assert fs.read_file("secret") == b"mine\n"
    fs.write_file("secret", b"still mine\n")
    fs.chmod("secret", 0o600)
    fs.mkdir("dir2")
    fs.rm("dir2", recursive=True)
    fs.write_file("dir", b"x")  # a name that exists only outside
    assert snapshot(outside) == before
    assert (moved / "secret").read_bytes() == b"still mine\n"
    assert (moved / "dir").read_bytes() == b"x"


def test_root_moved_under_outside_cannot_reach_parent(fs: Any, root_dir: Path, outside: Path) -> None:
    """Moving the root deeper (so that '..' would be somewhere else) changes nothing."""
    new_home = outside / "dir" / "root"
    os.rename(root_dir, new_home)
    before = {k: v for k, v in snapshot(outside).items() if not k.startswith("dir/root")}
    for p in ("..", "../file", "../../secret", "../root"):
        with pytest.raises(EscapeError):
            fs.stat(p)
        with pytest.raises(EscapeError):
            fs.write_file(p + "/x" if p == ".." else p, b"x")
    after = {k: v for k, v in snapshot(outside).items() if not k.startswith("dir/root")}
    # the parent directory's own mtime is unchanged too
    assert after == before
