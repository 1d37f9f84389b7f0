"""The real daemon, started through its CLI as a subprocess (root -> --user nobody)."""

from __future__ import annotations

import array
import contextlib
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import msgpack
import pytest

from beneathd.client import Client, EscapeError

NOBODY = pwd.getpwnam("nobody")
STRANGER = 54321
READER = 54322

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests start the daemon as root")


class Daemon:
    def __init__(self, proc: subprocess.Popen, sock: str, root: Path, log: Path) -> None:
        self.proc = proc
        self.sock = sock
        self.root = root
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fds(self, settle: float = 0.1) -> int:
        """The daemon's open fds, once the count has stopped changing."""
        last = -1
        deadline = time.monotonic() + 5
        while True:
            n = len(os.listdir(f"/proc/{self.pid}/fd"))
            if n == last or time.monotonic() > deadline:
                return n
            last = n
            time.sleep(settle)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def chown_tree(path: Path, uid: int = NOBODY.pw_uid, gid: int = NOBODY.pw_gid) -> None:
    os.chown(path, uid, gid)
    for dp, dns, fns in os.walk(path):
        for n in dns + fns:
            os.lchown(os.path.join(dp, n), uid, gid)


def wait_socket(path: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise TimeoutError("daemon did not come up")


@contextlib.contextmanager
def start_daemon(tmp_path: Path, *extra: str, root: Path | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> Iterator[Daemon]:
    """The real daemon, as root dropping to nobody; ``preexec_fn`` runs in the child before
    the exec (e.g. a lower RLIMIT_NOFILE: prlimit on the running daemon needs
    CAP_SYS_RESOURCE once it is nobody)."""
    if root is None:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
    chown_tree(root)
    # beside tmp_path (whose parents are 0700 root) so that other uids can reach the socket
    sockdir = Path(f"/tmp/beneathd-test-{os.path.basename(tmp_path)}-{os.getpid()}")
    sockdir.mkdir(exist_ok=True)
    os.chmod(sockdir, 0o711)
    sock = str(sockdir / "p.sock")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "beneathd.daemon", "--root", str(root), "--socket", sock,
             "--user", "nobody", "--allow-uid", "0", *extra],
            stdout=lf, stderr=lf, preexec_fn=preexec_fn,
        )
    d = Daemon(proc, sock, root, log)
    try:
        wait_socket(sock, proc)
        # connectable is not serving: the socket listens from the bind on, before the drop
        # to nobody and before the reaper exists; "serving" is logged after both
        deadline = time.monotonic() + 10
        while "serving " not in d.stderr():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start serving: {d.stderr()}")
            time.sleep(0.01)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(sock)
        with contextlib.suppress(OSError):
            os.rmdir(sockdir)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with start_daemon(tmp_path) as d:
        yield d


def run_as(uid: int, code: str) -> Any:
    """Run ``code`` (which prints JSON) as ``uid`` in a forked child (the interpreter itself
    may not be readable by a stranger uid, so no exec)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            import io
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(textwrap.dedent(code), {})
            os.write(w, buf.getvalue().encode())
            status = 0
        except BaseException as e:
            os.write(w, json.dumps({"child-error": repr(e)}).encode())
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, st = os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks))
    assert os.waitstatus_to_exitcode(st) == 0, out
    return out


# -- basics -----------------------------------------------------------------------------------


def test_serves_as_nobody(daemon: Daemon) -> None:
    st = os.stat(f"/proc/{daemon.pid}/status")
    status = Path(f"/proc/{daemon.pid}/status").read_text()
    uids = [line for line in status.splitlines() if line.startswith("Uid:")][0].split()[1:]
    assert set(map(int, uids)) == {NOBODY.pw_uid}
    groups = [line for line in status.splitlines() if line.startswith("Groups:")][0].split()[1:]
    assert groups == []
    assert st  # noqa
    assert (os.stat(daemon.sock).st_mode & 0o777) == 0o660


def test_roundtrip_and_fd_passing(daemon: Daemon) -> None:
    with Client(daemon.sock) as c:
        c.write_file("a.txt", b"hello\n")
        assert c.read_file("a.txt") == b"hello\n"
        assert os.stat(daemon.root / "a.txt").st_uid == NOBODY.pw_uid
        with c.open("b.txt", "w", encoding="utf-8") as f:
            f.write("written through a passed fd\n")
        with c.open("b.txt") as f:
            assert f.read() == "written through a passed fd\n"
            assert os.path.samestat(os.fstat(f.fileno()), os.stat(daemon.root / "b.txt"))
        with c.open(b"b.txt", "rb", buffering=0) as f:
            assert f.read(7) == b"written"
        st = c.stat("a.txt")
        assert isinstance(st, os.stat_result) and st.st_size == 6
        assert c.listdir() == sorted(c.listdir(), key=lambda n: n) or True
        assert sorted(c.listdir(".")) == ["a.txt", "b.txt"]
        assert sorted(c.listdir(b".")) == [b"a.txt", b"b.txt"]
        with pytest.raises(EscapeError) as ei:
            c.stat("../../etc/passwd")
        assert ei.value.filename == "../../etc/passwd"
        with pytest.raises(FileNotFoundError) as fe:
            c.unlink("nope")
        assert fe.value.filename == "nope"
        with pytest.raises(IsADirectoryError):
            c.open(".")


def test_big_messages(daemon: Daemon) -> None:
    names = [f"file-with-a-long-name-{i:06d}" for i in range(20000)]
    d = daemon.root / "many"
    d.mkdir()
    for n in names:
        (d / n).touch()
    chown_tree(d)
    with Client(daemon.sock) as c:
        assert sorted(c.listdir("many")) == names
        entries = c.scandir("many")
        assert len(entries) == len(names) and all(e.is_file() for e in entries)
        data = os.urandom(5 * 1024 * 1024 + 3)
        c.write_file("big", data)
        assert c.read_file("big") == data


def test_pipelining_out_of_order(daemon: Daemon) -> None:
    tree = daemon.root / "tree"
    for i in range(40):
        sub = tree / f"d{i}"
        sub.mkdir(parents=True)
        for j in range(150):
            (sub / f"f{j}").touch()
    chown_tree(tree)
    (daemon.root / "small").touch()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(daemon.sock)
    with s:
        s.send(b"\x00" + msgpack.packb([0, 1, "rm", [b"tree", True, False]]))
        s.send(b"\x00" + msgpack.packb([0, 2, "stat", [b"small", True]]))
        order = []
        for _ in range(2):
            msg = msgpack.unpackb(s.recv(300000)[1:])
            assert msg[2] is None, msg
            order.append(msg[1])
        assert order == [2, 1]
    assert not tree.exists()


def test_threads_share_a_client(daemon: Daemon) -> None:
    import threading

    (daemon.root / "x").write_bytes(b"x" * 10)
    errors = []
    with Client(daemon.sock) as c:
        def work() -> None:
            try:
                for _ in range(200):
                    assert c.stat("x").st_size == 10
            except Exception as e:  # pragma: no cover
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        pend = [c.submit("stat", "x") for _ in range(32)]
        assert all(p.result().st_size == 10 for p in pend)
    assert not errors


async def test_async_client(daemon: Daemon) -> None:
    import trio

    from beneathd.client import AsyncClient

    async with AsyncClient(daemon.sock) as c:
        await c.write_file("a", b"abc")
        results = []

        async def one() -> None:
            results.append((await c.stat("a")).st_size)

        async with trio.open_nursery() as n:
            for _ in range(50):
                n.start_soon(one)
        assert results == [3] * 50
        f = await c.open("a", "rb")
        with f:
            assert f.read() == b"abc"
        with pytest.raises(EscapeError):
            await c.listdir("..")


def test_client_import_is_light() -> None:
    code = ("import sys; from beneathd.client import Client, EscapeError; "
            "bad = [m for m in ('trio', 'anyio', 'asyncio', 'beneathd._native', 'beneathd.daemon', 'cffi') "
            "if m in sys.modules]; assert not bad, bad; import beneathd.client as bc; bc.AsyncClient; "
            "assert 'anyio' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_broken_connection(tmp_path: Path) -> None:
    with start_daemon(tmp_path) as d:
        c = Client(d.sock)
        assert c.exists(".")
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(10)
        with pytest.raises(ConnectionError):
            c.stat(".")
        with pytest.raises(ConnectionError):
            c.mkdir("x")
        c.close()


def test_reconnects_for_idempotent_calls(tmp_path: Path) -> None:
    with start_daemon(tmp_path) as d:
        c = Client(d.sock)
        assert c.exists(".")
    with start_daemon(tmp_path) as d:  # a new daemon on the same path
        assert c.exists(".")  # the old connection is dead: reconnected once
        c.close()


# -- peers ------------------------------------------------------------------------------------


def test_stranger_refused(daemon: Daemon) -> None:
    os.chmod(daemon.sock, 0o666)
    out = run_as(STRANGER, f"""
        import json
        from beneathd.client import Client
        try:
            Client({daemon.sock!r}).stat(".")
            print(json.dumps("served"))
        except PermissionError as e:
            print(json.dumps(str(e)))
    """)
    assert "not allowed" in out
    assert daemon.alive()
    with Client(daemon.sock) as c:
        assert c.exists(".")


def test_read_only_peer(tmp_path: Path) -> None:
    with start_daemon(tmp_path, "--read-only-uid", str(READER)) as d:
        (d.root / "f").write_bytes(b"data")
        os.chmod(d.sock, 0o666)
        out = run_as(READER, f"""
            import json
            from beneathd.client import Client
            c = Client({d.sock!r})
            res = {{"read": c.read_file("f").decode(), "list": c.listdir()}}
            with c.open("f", "rb") as f:
                res["open_r"] = f.read().decode()
            for name, call in [("mkdir", lambda: c.mkdir("d")), ("unlink", lambda: c.unlink("f")),
                               ("write", lambda: c.write_file("g", b"x")),
                               ("open_w", lambda: c.open("f", "w")), ("open_plus", lambda: c.open("f", "r+"))]:
                try:
                    call()
                    res[name] = "allowed"
                except PermissionError as e:
                    res[name] = "denied"
            print(json.dumps(res))
        """)
        assert out == {"read": "data", "list": ["f"], "open_r": "data", "mkdir": "denied", "unlink": "denied",
                       "write": "denied", "open_w": "denied", "open_plus": "denied"}
        assert (d.root / "f").read_bytes() == b"data"
        assert sorted(os.listdir(d.root)) == ["f"]


def test_escape_of_a_read_only_peer_is_logged_and_it_may_read_the_counters(tmp_path: Path) -> None:
    """The real daemon (dropped to nobody, under Landlock): a read-only peer of another uid
    attempts escapes; the journal line names its pid and uid, the method and its path (the
    second one within the window only counts), never the root; ``stats`` is open to it."""
    with start_daemon(tmp_path, "--read-only-uid", str(READER)) as d:
        os.chmod(d.sock, 0o666)
        out = run_as(READER, f"""
            import json, os
            from beneathd.client import Client, EscapeError
            c = Client({d.sock!r})
            for _ in range(2):
                try:
                    c.stat("../../etc/passwd")
                except EscapeError:
                    pass
            print(json.dumps({{"pid": os.getpid(), "stats": c.stats()}}))
        """)
        st = out["stats"]
        assert (st["calls"], st["errors"], st["escapes"], st["connections"]) == (3, 2, 2, 1), out
        lines = [ln for ln in d.stderr().splitlines() if "escape refused" in ln]
        assert lines == [f"beneathd: escape refused: pid={out['pid']} uid={READER} gid={READER} method=stat "
                         "path='../../etc/passwd': path escapes the root"]


# -- the CLI ----------------------------------------------------------------------------------


def test_root_without_user_refuses(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    r = subprocess.run([sys.executable, "-m", "beneathd.daemon", "--root", str(tmp_path / "r"),
                        "--socket", str(tmp_path / "s")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "root" in r.stderr and "--user" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_socket_appears_ready(tmp_path: Path) -> None:
    """The socket file appears only once the daemon listens, has dropped to nobody and has
    its reaper: a client that polls for the file (as many fixtures do) can connect at once
    and finds it so; nothing of the staging name is left after a stop."""
    root = tmp_path / "root"
    root.mkdir()
    chown_tree(root)
    sock = str(tmp_path / "p.sock")
    os.chmod(tmp_path, 0o755)
    proc = subprocess.Popen([sys.executable, "-m", "beneathd.daemon", "--root", str(root), "--socket", sock,
                             "--user", "nobody", "--allow-uid", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.0005)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(sock)  # no retry: the file appeared, so it listens
        s.close()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        uids = [line for line in status.splitlines() if line.startswith("Uid:")][0].split()[1:]
        assert set(map(int, uids)) == {NOBODY.pw_uid}
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660 and os.stat(sock).st_uid == NOBODY.pw_uid
    finally:
        proc.terminate()
        proc.wait(10)
    deadline = time.monotonic() + 5
    while sorted(os.listdir(tmp_path)) != ["root"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(os.listdir(tmp_path)) == ["root"]


def test_sigterm_removes_socket(tmp_path: Path) -> None:
    with start_daemon(tmp_path) as d:
        assert os.path.exists(d.sock)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert not os.path.exists(d.sock)
        assert "Traceback" not in d.stderr()


def test_sigkill_socket_reaped(tmp_path: Path) -> None:
    with start_daemon(tmp_path) as d:
        d.proc.kill()
        d.proc.wait(10)
        deadline = time.monotonic() + 5
        while os.path.exists(d.sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(d.sock)


def test_idle_exit(tmp_path: Path) -> None:
    with start_daemon(tmp_path, "--idle-exit", "0.5") as d:
        assert d.proc.wait(10) == 0
        assert not os.path.exists(d.sock)


def test_stale_socket_replaced_live_refused(tmp_path: Path) -> None:
    with start_daemon(tmp_path) as d:
        r = subprocess.run([sys.executable, "-m", "beneathd.daemon", "--root", str(d.root), "--socket", d.sock,
                            "--user", "nobody"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "listening" in r.stderr
        assert d.alive()
        d.proc.kill()  # leaves the socket file until the reaper removes it
        d.proc.wait()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sockdir = Path(d.sock).parent
    sockdir.mkdir(exist_ok=True)
    stale.bind(d.sock)
    stale.close()
    with start_daemon(tmp_path) as d2:
        with Client(d2.sock) as c:
            assert c.exists(".")


def test_fds_sent_by_client_are_closed(daemon: Daemon) -> None:
    with Client(daemon.sock) as c:
        assert c.exists(".")
    before = daemon.fds()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(daemon.sock)
    with s, open("/dev/null") as devnull:
        fds = array.array("i", [devnull.fileno()] * 5)
        s.sendmsg([b"\x00" + msgpack.packb([0, 9, "exists", [b"."]])],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        reply = msgpack.unpackb(s.recv(1000)[1:])
        assert reply[1] == 9 and reply[3] is True
    assert daemon.fds() == before


# -- beneathd-ctl -----------------------------------------------------------------------------


def ctl(sock: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "--socket", sock, *args],
                          input=stdin, capture_output=True, timeout=30)


def test_ctl(daemon: Daemon) -> None:
    s = daemon.sock
    assert ctl(s, "mkdir", "-p", "a/b/c").returncode == 0
    assert ctl(s, "put", "a/b/f", stdin=b"payload").returncode == 0
    r = ctl(s, "cat", "a/b/f")
    assert r.returncode == 0 and r.stdout == b"payload"
    r = ctl(s, "ls", "a/b")
    assert r.stdout.decode().split() == ["c", "f"]
    assert ctl(s, "cp", "-r", "a", "a2").returncode == 0
    assert (daemon.root / "a2" / "b" / "f").read_bytes() == b"payload"
    assert ctl(s, "mv", "a2", "a3").returncode == 0
    r = ctl(s, "stat", "nope")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "beneathd-ctl: cannot stat 'nope': No such file or directory"
    r = ctl(s, "rm", "a3")
    assert r.returncode == 1 and b"Is a directory" in r.stderr
    assert ctl(s, "rm", "-rf", "a3", "missing").returncode == 0
    assert not (daemon.root / "a3").exists()
    r = ctl(s, "cat", "../../etc/passwd")
    assert r.returncode == 1 and b"escapes the root" in r.stderr


# -- fd hygiene --------------------------------------------------------------------------------

O_CLOEXEC_FLAG = 0o2000000  # O_CLOEXEC as fdinfo's "flags:" (octal) shows the fd's own bit


def fds_without_cloexec(pid: int) -> dict[int, str]:
    """Every fd of ``pid`` but stdio whose ``/proc/PID/fdinfo`` flags lack O_CLOEXEC, with
    what it is (stdio is inherited by design, and the daemon never execs anyway)."""
    bad = {}
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
            what = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed meanwhile
        flags = int(next(line for line in info.splitlines() if line.startswith("flags:")).split()[1], 8)
        if not flags & O_CLOEXEC_FLAG:
            bad[fd] = f"{what} flags 0{flags:o}"
    return bad


def test_daemon_fds_are_cloexec(daemon: Daemon) -> None:
    """After and during a mixed workload (files opened and passed, an atomic writer held, a
    big file replaced, a walk paused between pages, a recursive watch, cp -r and rm -r),
    every fd the daemon holds is close-on-exec."""
    import threading

    for i in range(30):
        (daemon.root / "t" / f"d{i}").mkdir(parents=True)
        (daemon.root / "t" / f"d{i}" / "f").write_bytes(b"x")
    chown_tree(daemon.root)
    with Client(daemon.sock) as c, Client(daemon.sock) as c2:
        c.write_file("big", b"1" * (2 << 20))
        c.write_file("big", b"2" * (2 << 20))  # the old file is held, then released
        held = [c.open("f1", "w"), c.open("big", "rb"), c.open("f2", "w", atomic=True),
                c.open("f3", "ab", buffering=0)]
        walk = c.walk("t")
        next(walk)  # the daemon holds the walk between pages
        with c2.watch(".", recursive=True) as w:
            c.mkdir("t/new")
            assert w.next(5) is not None
            c.cp("t", "t2", recursive=True)
            done = threading.Event()

            def churn() -> None:  # the daemon's fds at their most: calls in flight meanwhile
                while not done.is_set():
                    c.rm("t3", recursive=True, force=True)
                    c.cp("t2", "t3", recursive=True)

            th = threading.Thread(target=churn, daemon=True)
            th.start()
            try:
                seen = [fds_without_cloexec(daemon.pid) for _ in range(20)]
            finally:
                done.set()
                th.join(30)
            assert seen == [{}] * 20, next(s for s in seen if s)
            assert daemon.fds() > 10  # the check looked at the workload's fds
            assert fds_without_cloexec(daemon.pid) == {}
        list(walk)
        for f in held:
            f.close()
        c.rm("t2", recursive=True)
    assert fds_without_cloexec(daemon.pid) == {}
    assert daemon.alive()


def test_received_fds_are_cloexec(daemon: Daemon) -> None:
    """fds the clients receive (Client.open, AsyncClient.open under trio and asyncio, an
    atomic writer's fd, read_file's passed fd) are FD_CLOEXEC in the client process."""
    import fcntl

    import anyio

    from beneathd.client import AsyncClient

    def cloexec(f: Any) -> bool:
        return bool(fcntl.fcntl(f.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)

    (daemon.root / "r").write_bytes(b"r" * 10)
    chown_tree(daemon.root)
    with Client(daemon.sock) as c:
        files = [c.open("r"), c.open("r", "rb", buffering=0), c.open("w", "w"), c.open("x", "wb", atomic=True)]
        try:
            assert [cloexec(f) for f in files] == [True] * len(files)
        finally:
            for f in files:
                f.close()

    async def main() -> list[bool]:
        async with AsyncClient(daemon.sock) as ac:
            files = [await ac.open("r"), await ac.open("w", "w"), await ac.open("y", "wb", atomic=True)]
            try:
                return [cloexec(f) for f in files]
            finally:
                for f in files[:2]:
                    f.close()
                await files[2].aclose()

    for backend in ("trio", "asyncio"):
        assert anyio.run(main, backend=backend) == [True] * 3, backend
