"""Fail closed, through the real daemon: under a seccomp filter that makes openat2(2)
return ENOSYS (a kernel without it) or EPERM (a container policy blocking it), the daemon
refuses to start: non-zero exit, a one-line message naming openat2 and the cause, no
traceback, nothing served, and no socket file left behind.  (tests/test_native.py checks
``Root`` itself the same way.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import IS_ROOT, DaemonProc  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_daemon_refuses_to_start_without_openat2(err: str) -> None:
    d = DaemonProc()  # makes the directories; not started
    try:
        launcher = textwrap.dedent(
            f"""
            import errno, os, sys
            sys.path.insert(0, {str(HERE)!r})
            from seccomp_util import deny_syscall, SYS_OPENAT2
            deny_syscall(SYS_OPENAT2, errno.{err})   # inherited across execve
            argv = {d.argv()!r}
            os.execv(argv[0], argv)
            """
        )
        r = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert "Traceback" not in out, out
        assert "openat2" in out, out
        if err == "ENOSYS":
            assert "ENOSYS" in out or "not implemented" in out.lower() or "missing" in out.lower(), out
        else:
            assert "seccomp" in out or "EPERM" in out or "blocked" in out.lower(), out
        # nothing is served and the socket file it bound is gone
        assert not os.path.exists(d.socket), os.listdir(d.base)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with pytest.raises(OSError):
            s.connect(d.socket)
        s.close()
    finally:
        d.close()


def test_daemon_starts_without_the_filter() -> None:
    """The control: the same launcher without the filter serves."""
    with DaemonProc() as d:
        from beneathd.client import Client

        with Client(d.socket, timeout=10) as c:
            assert c.exists(".") is True
        if IS_ROOT:  # and it really dropped to nobody
            with open(f"/proc/{d.pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert set(uids) == {"65534"}, uids


@pytest.mark.parametrize("module", ["landlock", "systemd"])
def test_daemon_refuses_to_start_with_a_broken_module(module: str) -> None:
    """A daemon module that fails to import (here: an ImportError injected for it) stops the
    daemon; it never runs without Landlock (or systemd glue) because of a bug."""
    d = DaemonProc()
    try:
        launcher = textwrap.dedent(
            f"""
            import runpy, sys

            class Broken:
                def find_spec(self, name, path=None, target=None):
                    if name == "beneathd.daemon.{module}":
                        raise ImportError("simulated broken {module}.py")
                    return None

            sys.meta_path.insert(0, Broken())
            sys.argv = {d.argv()[2:]!r}
            runpy.run_module("beneathd.daemon", run_name="__main__", alter_sys=True)
            """
        )
        r = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert f"simulated broken {module}.py" in out, out
        assert "serving" not in out, out
        assert not os.path.exists(d.socket)
    finally:
        d.close()


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_daemon_serves_with_the_emulated_resolver_when_openat2_is_blocked(err: str) -> None:
    """The operator's way out (DESIGN.md, "Resolvers"): under the same filter, with
    ``--resolver emulated`` the daemon starts, says so in its log, and serves beneath the
    root: an outward link and ``..`` are still refused as escapes."""
    from beneathd.client import Client, EscapeError

    d = DaemonProc("--resolver", "emulated")
    try:
        launcher = textwrap.dedent(
            f"""
            import errno, os, sys
            sys.path.insert(0, {str(HERE)!r})
            from seccomp_util import deny_syscall, SYS_OPENAT2
            deny_syscall(SYS_OPENAT2, errno.{err})
            argv = {d.argv()!r}
            os.execv(argv[0], argv)
            """
        )
        with open(d.log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=log, stderr=log, cwd="/")
        try:
            deadline = time.monotonic() + 60
            while "serving " not in d.log():
                assert proc.poll() is None, d.log()
                assert time.monotonic() < deadline, d.log()
                time.sleep(0.05)
            assert "resolver: emulated" in d.log(), d.log()
            with open(f"/proc/{proc.pid}/status") as f:
                assert "Seccomp:\t2" in f.read()  # the filter is on the daemon itself
            os.symlink("/etc", os.path.join(d.root, "out"))
            with Client(d.socket, timeout=10) as c:
                c.mkdir("a/b", parents=True)
                c.write_file("a/b/f", b"x")
                assert c.read_file("a/../a/b/f") == b"x"
                assert c.listdir("a") == ["b"]
                for p in ("out/passwd", "a/../../etc/passwd", "/etc/passwd"):
                    with pytest.raises(EscapeError):
                        c.stat(p)
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        d.close()
