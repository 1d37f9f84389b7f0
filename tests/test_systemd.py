"""systemd integration: the unit files, sd_listen_fds/sd_notify, and socket activation end to end.

Needs ``systemd-analyze`` and ``systemd-socket-activate`` (Debian: ``apt-get install -y
systemd``); no running systemd is required. The end-to-end test plays PID 1's part:
it holds the listening socket (as a .socket unit does) and hands it to
``systemd-socket-activate``, which waits for the first connect and execs the daemon.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from beneathd.daemon import systemd as sd

UNITS = Path(__file__).resolve().parent.parent / "systemd"
ANALYZE = shutil.which("systemd-analyze")
ACTIVATE = shutil.which("systemd-socket-activate")
EXPOSURE_MAX = 2.0

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing (apt-get install -y systemd)")


# ---- unit files ------------------------------------------------------------------------


def _unit_dir(tmp_path: Path, dropin: str | None = None) -> Path:
    """The shipped units in a temp dir; only ExecStart's binary is pointed at one that exists."""
    d = tmp_path / "units"
    d.mkdir()
    exe = tmp_path / "beneathd"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    for name in ("beneathd@.service", "beneathd@.socket"):
        text = (UNITS / name).read_text()
        if name.endswith(".service"):
            assert "ExecStart=/usr/local/bin/beneathd " in text
            text = text.replace("/usr/local/bin/beneathd", str(exe))
        (d / name).write_text(text)
    if dropin is not None:
        (d / "beneathd@p1.service.d").mkdir()
        (d / "beneathd@p1.service.d" / "override.conf").write_text(dropin)
    return d


def _analyze(d: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run([ANALYZE, *args], cwd=d, env=env, capture_output=True, text=True, timeout=120)


@needs_analyze
@pytest.mark.parametrize("dropin", [None, "home"], ids=["defaults", "dropin-home-root"])
def test_units_verify_clean(tmp_path: Path, dropin: str | None) -> None:
    text = None
    if dropin == "home":  # the override DEPLOY.md documents for a root under /home
        text = ("[Service]\nUser=alice\nGroup=alice\nEnvironment=BENEATHD_ROOT=/home/alice/site\n"
                "ReadWritePaths=/home/alice/site\nProtectHome=tmpfs\nBindPaths=/home/alice/site\n")
    d = _unit_dir(tmp_path, text)
    p = _analyze(d, "verify", "--man=no", "./beneathd@p1.service", "./beneathd@p1.socket")
    # unknown keys, bad values and missing binaries are only warnings: any output fails
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr


@needs_analyze
def test_units_exposure(tmp_path: Path) -> None:
    d = _unit_dir(tmp_path)
    p = _analyze(d, "security", "--offline=true", "--no-pager", "./beneathd@p1.service")
    m = re.search(r"Overall exposure level for beneathd@p1\.service: ([0-9.]+)", p.stdout)
    assert m, p.stdout + p.stderr
    exposure = float(m.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= EXPOSURE_MAX, p.stdout


def test_service_settings() -> None:
    """The things the daemon relies on, spelled out (verify would accept their absence)."""
    svc = (UNITS / "beneathd@.service").read_text()
    sock = (UNITS / "beneathd@.socket").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes",
                 "RestrictAddressFamilies=AF_UNIX", "PrivateNetwork=yes", "ProtectSystem=strict",
                 "MemoryDenyWriteExecute=yes"):
        assert line in svc, line
    sysc = " ".join(re.findall(r"^SystemCallFilter=(.*)$", svc, re.M))
    for call in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "openat2"):
        assert call in sysc
    for line in ("ListenSequentialPacket=/run/beneathd/%i.sock", "SocketMode=0660", "RemoveOnStop=yes"):
        assert line in sock, line


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers/systemd-tmpfiles missing")
def test_sysusers_and_tmpfiles_snippets(tmp_path: Path) -> None:
    su, tf = tmp_path / "su", tmp_path / "tf"
    (su / "etc").mkdir(parents=True)
    tf.mkdir()
    p = subprocess.run(["systemd-sysusers", f"--root={su}", str(UNITS / "beneathd.sysusers")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^beneathd:x:\d+:", (su / "etc" / "group").read_text(), re.M)
    p = subprocess.run(["systemd-tmpfiles", f"--root={tf}", "--create", str(UNITS / "beneathd.tmpfiles")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (tf / "srv" / "beneathd").is_dir()


MDWE_CHILD = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:          # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3)
    print("unsupported"); sys.exit(0)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("not enforced"); sys.exit(1)
except OSError:
    pass
import msgpack, trio
import beneathd._native, beneathd.protocol
from beneathd.daemon import Root
for mod in ("beneathd.daemon.server", "beneathd.daemon.cli", "beneathd.client"):
    try:
        __import__(mod)
    except ImportError:
        pass
with Root(sys.argv[1]) as fs:
    fs.write_file("a", b"x")
    fs.copy_file("a", "b")
    assert fs.listdir(".") == ["a", "b"] or sorted(fs.listdir(".")) == ["a", "b"]
async def main():
    return await trio.to_thread.run_sync(lambda: msgpack.unpackb(msgpack.packb([1, b"x"])))
assert trio.run(main) == [1, b"x"]
print("ok")
"""


def test_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes is safe: the same W+X ban (prctl PR_SET_MDWE) breaks nothing."""
    p = subprocess.run([sys.executable, "-c", MDWE_CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    if p.stdout.strip() == "unsupported":
        pytest.skip("kernel without PR_SET_MDWE")
    assert p.stdout.strip() == "ok"


# ---- sd_listen_fds / sd_notify -----------------------------------------------------------


def _run_listen_fds(sock: socket.socket, listen_pid: str = "$$") -> str:
    code = ("from beneathd.daemon import systemd as sd, landlock\nimport os\n"
            "try:\n    s = sd.listen_fds()\n"
            "    print([(x.fileno(), x.type.name) for x in s], os.environ.get('LISTEN_FDS'))\n"
            "except sd.ActivationError as e:\n    print('error', e)\n")
    p = subprocess.run(["sh", "-c", f'exec 3<&0 0</dev/null; LISTEN_PID={listen_pid} LISTEN_FDS=1 exec "$@"',
                        "sh", sys.executable, "-c", code], stdin=sock.fileno(), capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_listen_fds(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(tmp_path / "a.sock"))
        s.listen()
        assert _run_listen_fds(s) == "[(3, 'SOCK_SEQPACKET')] None"
        assert _run_listen_fds(s, listen_pid="1") == "[] None"  # meant for another process
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(tmp_path / "b.sock"))
        s.listen()
        assert "need AF_UNIX/SOCK_SEQPACKET" in _run_listen_fds(s)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(tmp_path / "c.sock"))
        assert "not a listening socket" in _run_listen_fds(s)


def test_listen_fds_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    monkeypatch.delenv("LISTEN_PID", raising=False)
    assert sd.listen_fds() == []


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, abstract: bool) -> None:
    name = f"beneathd-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as r:
        if abstract:
            r.bind("\0" + name)
            monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        else:
            r.bind(str(tmp_path / "n"))
            monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n"))
        r.settimeout(5)
        assert sd.notify("READY=1\nSTATUS=serving")
        assert r.recv(100) == b"READY=1\nSTATUS=serving"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sd.notify("READY=1") is False  # never raises


# ---- end to end: socket activation, READY=1, first request, idle exit, restart -----------


def _have_daemon() -> bool:
    try:
        import beneathd.daemon.cli  # noqa: F401
    except ImportError:
        return False
    return True


def _request(path: str) -> int | None:
    """One stat of '.' through ``Client``: its st_ino (None over the raw fallback)."""
    try:
        from beneathd.client import Client
    except ImportError:
        Client = None  # type: ignore[assignment]
    if Client is not None:
        with Client(path) as fs:
            return fs.stat(".").st_ino
    import msgpack  # the client is not there yet: the raw request from PROTOCOL.md

    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as c:
        c.settimeout(20)
        c.connect(path)
        c.send(msgpack.packb([0, 1, "stat", [b"."]], use_bin_type=True))
        reply = msgpack.unpackb(c.recv(1 << 18), raw=False)
        assert reply[:3] == [1, 1, None], reply
        return None


class Activator:
    """PID 1's part: keeps the listening socket, (re)starts systemd-socket-activate."""

    def __init__(self, tmp_path: Path, root: Path, idle: float) -> None:
        self.path = str(tmp_path / "p1.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o666)
        self.listener.listen(128)
        self.notify_name = f"beneathd-test-{secrets.token_hex(6)}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind("\0" + self.notify_name)
        self.root, self.idle = root, idle
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "daemon.log"

    def start(self) -> None:
        assert ACTIVATE is not None
        cmd = ["sh", "-c", 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh",
               ACTIVATE, "--seqpacket", "-E", f"NOTIFY_SOCKET=@{self.notify_name}",
               sys.executable, "-m", "beneathd.daemon", "--root", str(self.root),
               "--user", "nobody", "--allow-uid", "0", "--idle-exit", str(self.idle)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=self.listener.fileno(), stdout=log, stderr=log)

    def messages(self, until: bytes, timeout: float = 20) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.notify.recv(4096)
            except TimeoutError:
                break
            out.append(msg)
            if until in msg.split(b"\n"):
                return out
        raise AssertionError(f"no {until!r} on NOTIFY_SOCKET, got {out}; log:\n{self.log.read_text()}")

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.listener.close()
        self.notify.close()


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate missing (apt-get install -y systemd)")
@pytest.mark.skipif(os.geteuid() != 0, reason="runs the daemon as root with --user nobody")
@pytest.mark.skipif(not _have_daemon(), reason="beneathd.daemon.cli not written yet")
def test_socket_activation_end_to_end(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("x")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    ino = os.stat(root).st_ino
    act = Activator(tmp_path, root, idle=1)
    try:
        act.start()
        time.sleep(0.2)
        assert act.proc is not None and act.proc.poll() is None  # waiting for a connect

        t0 = time.monotonic()
        first = _request(act.path)  # connect -> activation -> first reply
        cold = time.monotonic() - t0
        print(f"cold start, first connect to first reply: {cold * 1000:.0f} ms")
        assert first in (ino, None)
        msgs = act.messages(b"READY=1")
        assert any(m.startswith(b"READY=1") or b"\nREADY=1" in m for m in msgs)

        # idle exit: no client for --idle-exit seconds -> clean exit (status 0), STOPPING=1
        assert act.proc.wait(timeout=20) == 0, act.log.read_text()
        act.messages(b"STOPPING=1", timeout=1)

        # restart on the next connect: the client connects while no daemon runs; its
        # connection waits in the listener's backlog (as with a .socket unit) until the
        # activator starts the daemon again
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(_request(act.path)))
        t.start()
        time.sleep(0.3)
        assert not result
        act.start()
        t.join(30)
        assert result and result[0] in (ino, None), result
        act.messages(b"READY=1")
        assert act.proc.wait(timeout=20) == 0, act.log.read_text()
        log = act.log.read_text()
        print(log)
        assert "Landlock" in log  # applied, or the warning that the kernel has none
    finally:
        act.close()
