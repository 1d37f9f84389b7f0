"""Landlock self-confinement (daemon/landlock.py).

Confinement is irreversible and per process, so every test that applies it runs a child
Python that calls the same ``confine()`` the daemon calls, then reports what worked.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from beneathd.daemon import landlock

ABI = landlock.abi_version()
needs_landlock = pytest.mark.skipif(ABI < 2, reason=f"kernel Landlock ABI {ABI} (< 2): confine() is a no-op")


def run_child(code: str, *args: str) -> dict:
    prog = textwrap.dedent(code)
    p = subprocess.run([sys.executable, "-c", prog, *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_handled_access_by_abi() -> None:
    A = landlock.ACCESS
    assert landlock.handled_access(1) == (1 << 13) - 1
    assert landlock.handled_access(2) == landlock.handled_access(1) | A["REFER"]
    assert landlock.handled_access(3) == landlock.handled_access(2) | A["TRUNCATE"]
    assert landlock.handled_access(4) == landlock.handled_access(3)
    assert landlock.handled_access(5) == landlock.handled_access(4) | A["IOCTL_DEV"]
    assert landlock.handled_access(7) == landlock.handled_access(99) == (1 << 16) - 1
    with pytest.raises(ValueError):
        landlock.handled_access(0)


def test_no_landlock_is_a_warning(tmp_path: Path) -> None:
    # these return before anything is applied, so they are safe in-process
    for e in (38, 95):  # ENOSYS, EOPNOTSUPP
        msg = landlock.confine(str(tmp_path), _abi=-e)
        assert msg.startswith("warning: Landlock unavailable")
    assert landlock.confine(str(tmp_path), _abi=1).startswith("warning: Landlock ABI 1")
    with pytest.raises(OSError):
        landlock.confine(str(tmp_path), _abi=-1)  # EPERM: anything else fails closed


def test_refuses_with_threads(tmp_path: Path) -> None:
    import threading

    ev = threading.Event()
    t = threading.Thread(target=ev.wait)
    t.start()
    try:
        with pytest.raises(RuntimeError, match="before any other thread"):
            landlock.confine(str(tmp_path), _abi=7)
    finally:
        ev.set()
        t.join()


CHILD = r"""
import errno, json, os, socket, sys
from beneathd.daemon.landlock import confine
from beneathd.daemon.systemd import notify as sd_notify   # every import before confine()
root, outside, notify = sys.argv[1], sys.argv[2], sys.argv[3]
res = {}
def attempt(name, fn):
    try:
        r = fn()
        res[name] = "ok" if r is None or not isinstance(r, int) or r >= 0 else f"errno {-r}"
    except OSError as e:
        res[name] = f"errno {e.errno}"

# as the daemon does: open the root first, then confine
from beneathd.daemon import Root
fs = Root(root)
res["log"] = confine(fs.fileno())   # the dirfd, as the CLI passes it

attempt("read_outside", lambda: open(os.path.join(outside, "secret")).read())
attempt("write_outside", lambda: open(os.path.join(outside, "new"), "w"))
attempt("list_outside", lambda: os.listdir(outside))
attempt("read_etc", lambda: open("/etc/passwd").read())
attempt("mkdir_outside", lambda: os.mkdir(os.path.join(outside, "d")))
attempt("read_inside_by_path", lambda: open(os.path.join(root, "f")).read())
attempt("root_read", lambda: fs.read_file("f"))
attempt("root_open_w", lambda: fs.open("o", "w").write("x"))
attempt("root_open_r", lambda: fs.open("f").read())
attempt("root_write_file", lambda: fs.write_file("w", b"data"))          # O_TMPFILE + /proc/self/fd linkat
attempt("root_mkdir", lambda: fs.mkdir("d/e", parents=True))
attempt("root_copy_file", lambda: fs.copy_file("f", "d/e/c"))            # cross-directory: REFER
attempt("root_rename", lambda: fs.rename("d/e/c", "c2"))
attempt("root_link", lambda: fs.link("f", "d/l"))
attempt("root_symlink", lambda: fs.symlink("f", "s"))
attempt("root_truncate", lambda: fs.truncate("w", 2))
attempt("root_chmod", lambda: fs.chmod("w", 0o600))
attempt("root_utime", lambda: fs.utime("w"))
attempt("root_mkfifo", lambda: fs.mkfifo("fifo"))
attempt("root_listdir", lambda: fs.listdir("."))
attempt("root_realpath", lambda: fs.realpath("s"))
attempt("root_cp_r", lambda: fs.cp("d", "d2", recursive=True))
attempt("root_rm_r", lambda: fs.rm("d", recursive=True))
res["content_w"] = fs.read_file("w").decode()
res["listing"] = sorted(fs.listdir("."))
# sd_notify to a socket outside the root still works (sendto is not an open)
os.environ["NOTIFY_SOCKET"] = notify
res["notify"] = sd_notify("READY=1")
print(json.dumps(res))
"""


@needs_landlock
def test_confined_process(tmp_path: Path, root_dir: Path, outside: Path) -> None:
    (root_dir / "f").write_text("inside\n")
    ns = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(ns))
        s.settimeout(5)
        res = run_child(CHILD, str(root_dir), str(outside), str(ns))
        assert s.recv(100) == b"READY=1"
    eacces = f"errno {13}"
    for k in ("read_outside", "write_outside", "list_outside", "read_etc", "mkdir_outside"):
        assert res[k] == eacces, (k, res[k])
    for k, v in res.items():
        if k.startswith("root_") or k == "read_inside_by_path":
            assert v == "ok", (k, v)
    assert res["log"].startswith(f"Landlock ABI {ABI} applied")
    assert res["content_w"] == "da"
    assert res["listing"] == ["c2", "d2", "f", "fifo", "o", "s", "w"]
    assert res["notify"] is True
    assert not (outside / "new").exists() and not (outside / "d").exists()


TRIO_CHILD = r"""
import json, os, socket, sys, msgpack, trio
from beneathd.daemon.landlock import confine
root, sockpath = sys.argv[1], sys.argv[2]
ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
ls.bind(sockpath); ls.listen()
log = confine(root)
out = {}
async def main():
    l = trio.socket.from_stdlib_socket(ls)
    async def client():
        c = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        await c.connect(sockpath)
        await c.send(msgpack.packb([0, 1, "stat", [b"."]]))
        out["reply"] = msgpack.unpackb(await c.recv(1000))
    async with trio.open_nursery() as n:
        n.start_soon(client)
        s, _ = await l.accept()
        req = msgpack.unpackb(await s.recv(1000))
        # a worker thread made after confinement inherits it and still works beneath the root
        size = await trio.to_thread.run_sync(lambda: os.stat(root).st_mode)
        with trio.move_on_after(0.01):
            await trio.sleep(1)
        await s.send(msgpack.packb([1, req[1], None, size]))
        try:
            await trio.to_thread.run_sync(lambda: open("/etc/hostname").read())
        except PermissionError:
            out["thread_outside"] = "EACCES"
trio.run(main)
print(json.dumps(out))
"""


@needs_landlock
def test_trio_and_threads_after_confinement(tmp_path: Path, root_dir: Path) -> None:
    res = run_child(TRIO_CHILD, str(root_dir), str(tmp_path / "s.sock"))
    assert res["reply"][:3] == [1, 1, None]
    assert res["thread_outside"] == "EACCES"


@needs_landlock
def test_extra_read(tmp_path: Path, root_dir: Path, outside: Path) -> None:
    code = r"""
import json, os, sys
from beneathd.daemon.landlock import confine
root, outside = sys.argv[1], sys.argv[2]
log = confine(root, extra_read=[outside])
r = {"log": log, "read": open(os.path.join(outside, "secret")).read()}
try:
    open(os.path.join(outside, "secret"), "a")
except PermissionError:
    r["write"] = "EACCES"
print(json.dumps(r))
"""
    res = run_child(code, str(root_dir), str(outside))
    assert res["read"] == "top secret\n" and res["write"] == "EACCES"
    assert f"read-only {outside}" in res["log"]


@needs_landlock
def test_extra_remove_allows_unlink_only(tmp_path: Path, root_dir: Path, outside: Path) -> None:
    """What the daemon grants its crash journal's directory: unlinking a file, nothing else."""
    code = r"""
import json, os, sys
from beneathd.daemon.landlock import confine
root, outside = sys.argv[1], sys.argv[2]
open(os.path.join(outside, "gone"), "w").close()
log = confine(root, extra_remove=[outside])
r = {"log": log}
os.unlink(os.path.join(outside, "gone"))
r["unlinked"] = not os.path.exists(os.path.join(outside, "gone"))
for what, f in [("read", lambda: open(os.path.join(outside, "secret")).read()),
                ("write", lambda: open(os.path.join(outside, "secret"), "a")),
                ("create", lambda: open(os.path.join(outside, "new"), "x")),
                ("mkdir", lambda: os.mkdir(os.path.join(outside, "d")))]:
    try:
        f()
        r[what] = "allowed"
    except PermissionError:
        r[what] = "EACCES"
print(json.dumps(r))
"""
    res = run_child(code, str(root_dir), str(outside))
    assert res["unlinked"] is True
    assert [res[k] for k in ("read", "write", "create", "mkdir")] == ["EACCES"] * 4
    assert f"remove_file only {outside}" in res["log"]


@needs_landlock
def test_missing_root_fails_closed(tmp_path: Path) -> None:
    code = r"""
import sys
from beneathd.daemon.landlock import confine
try:
    confine(sys.argv[1])
except FileNotFoundError:
    print('{"raised": true}')
"""
    assert run_child(code, str(tmp_path / "nope")) == {"raised": True}


SPECIAL_KINDS = ("sock", "fifo", "chr", "blk")


def _make_special(d: Path, kind: str, owner: int) -> None:
    """A socket (bound, then its listener closed), FIFO or device node at ``d/kind``
    (devices 240:0, a number for local use that no driver has), owned by ``owner``."""
    import os
    import stat

    p = d / kind
    if kind == "sock":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(p))
    elif kind == "fifo":
        os.mkfifo(p, 0o600)
    else:
        os.mknod(p, (stat.S_IFCHR if kind == "chr" else stat.S_IFBLK) | 0o600, os.makedev(240, 0))
    os.chown(p, owner, owner)


RENAME_LINK_AS_USER = r"""
import errno, json, os
d = {d!r}
res = {{}}
for kind in {kinds!r}:
    for op, fn in (("link", lambda: os.link(os.path.join(d, kind), os.path.join(d, kind + "_link"))),
                   ("rename", lambda: os.rename(os.path.join(d, kind), os.path.join(d, "sub", kind)))):
        try:
            fn()
            res[kind + " " + op] = "ok"
        except OSError as e:
            res[kind + " " + op] = errno.errorcode[e.errno]
print(json.dumps(res))
"""


@needs_landlock
@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="starts the daemon as root (then nobody)")
def test_daemon_renames_and_links_sockets_and_devices(tmp_path: Path) -> None:
    """Over the real daemon under Landlock (dropped to nobody), hard-linking and renaming
    into another directory an existing socket, FIFO, character or block device inside
    the root does what ``os.rename`` / ``os.link`` do as the same user: MAKE_SOCK,
    MAKE_CHAR and MAKE_BLOCK are granted beneath the root (they used to be handled but never
    granted: EACCES for a socket or a device node)."""
    import errno
    import os
    import shutil
    import tempfile

    from beneathd.client import Client
    from test_daemon import NOBODY, run_as, start_daemon

    uid = NOBODY.pw_uid
    ref = Path(tempfile.mkdtemp(prefix="beneathd-ref-"))  # beside /tmp: reachable by nobody
    try:
        os.chmod(ref, 0o755)
        for d in (ref, ref / "sub"):
            d.mkdir(exist_ok=True)
            os.chown(d, uid, uid)
        for kind in SPECIAL_KINDS:
            _make_special(ref, kind, uid)
        want = run_as(uid, RENAME_LINK_AS_USER.format(d=str(ref), kinds=SPECIAL_KINDS))
    finally:
        shutil.rmtree(ref, ignore_errors=True)
    assert set(want.values()) == {"ok"}, want  # what the project user can do itself

    with start_daemon(tmp_path) as d, Client(d.sock) as c:
        assert "Landlock ABI" in d.stderr() and "applied" in d.stderr(), d.stderr()
        c.mkdir("sub")
        for kind in SPECIAL_KINDS:
            _make_special(d.root, kind, uid)
        got = {}
        for kind in SPECIAL_KINDS:
            for op, fn in (("link", lambda: c.link(kind, f"{kind}_link")),
                           ("rename", lambda: c.rename(kind, f"sub/{kind}"))):
                try:
                    fn()
                    got[f"{kind} {op}"] = "ok"
                except OSError as e:
                    got[f"{kind} {op}"] = errno.errorcode[e.errno or 0]
        assert got == want
        assert sorted(os.listdir(d.root)) == sorted(["sub", *(f"{k}_link" for k in SPECIAL_KINDS)])
        for kind in SPECIAL_KINDS:
            assert os.path.samestat(os.lstat(d.root / "sub" / kind), os.lstat(d.root / f"{kind}_link"))
