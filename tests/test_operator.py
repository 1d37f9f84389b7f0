"""What an operator sees (issue 14): the log line of a refused escape and its rate limit,
the daemon's counters through ``stats`` (``Client``, ``AsyncClient``, ``beneathd-ctl``)
and systemd's ``STATUS=`` line."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from backends import server_thread
from beneathd.client import AsyncClient, Client, EscapeError
from beneathd.daemon.auth import PeerCred, Policy
from beneathd.daemon.escapes import MAX_SHOWN, EscapeLog, shown

ME = f"pid={os.getpid()} uid={os.getuid()} gid={os.getgid()}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _escapes(logs: list[str]) -> list[str]:
    return [ln for ln in logs if "escape refused" in ln]


# -- the log line --------------------------------------------------------------------------------


def test_escape_is_logged_with_peer_method_and_callers_path(root_dir: Path, outside: Path) -> None:
    os.symlink(outside, root_dir / "out")
    logs: list[str] = []
    with server_thread(root_dir, log=logs.append) as sock, Client(sock) as c:
        with pytest.raises(EscapeError):
            c.stat("out/secret")
        with pytest.raises(EscapeError):
            c.rename("../x", "y")
        with pytest.raises(EscapeError):
            c.du("out/dir")  # a long call: in a worker thread
        assert c.exists(".")
    lines = _escapes(logs)
    assert lines == [
        f"beneathd: escape refused: {ME} method=stat path='out/secret': path escapes the root",
        f"beneathd: escape refused: {ME} method=rename path='../x' path2='y': path escapes the root",
        f"beneathd: escape refused: {ME} method=du path='out/dir': path escapes the root",
    ]
    for ln in logs:  # never the root's absolute path, nor where the link points
        assert str(root_dir) not in ln and str(outside) not in ln


def test_escape_in_a_batch_and_a_walk_is_logged(root_dir: Path) -> None:
    logs: list[str] = []
    with server_thread(root_dir, log=logs.append) as sock, Client(sock) as c:
        r = c.batch([("stat", "."), ("exists", "../b")])
        assert isinstance(r[1], EscapeError)
        with pytest.raises(EscapeError):
            list(c.walk(".."))
    assert _escapes(logs) == [f"beneathd: escape refused: {ME} method=exists path='../b': path escapes the root",
                              f"beneathd: escape refused: {ME} method=walk path='..': path escapes the root"]


def test_a_path_cannot_forge_a_log_line(root_dir: Path) -> None:
    logs: list[str] = []
    with server_thread(root_dir, log=logs.append) as sock, Client(sock) as c:
        with pytest.raises(EscapeError):
            c.stat(b"../a\nbeneathd: all is well\x1b[2J\xff")
    (line,) = _escapes(logs)
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("path='../a\\nbeneathd: all is well\\x1b[2J\\\\xff': path escapes the root")


def test_shown() -> None:
    assert shown("a/é") == "'a/é'"
    assert shown(b"a/\xc3\xa9") == "'a/é'"
    long = shown(b"../" + b"x" * 1000)
    assert long.endswith("...(1003 bytes)") and len(long) < MAX_SHOWN + 40


# -- the rate limit ------------------------------------------------------------------------------


def test_rate_limit_per_peer_and_path(root_dir: Path) -> None:
    """The second identical escape within the window is not logged; when the window has
    passed, one line says how many were not, and the next escape is logged again."""
    clock = Clock()
    logs: list[str] = []
    with server_thread(root_dir, log=logs.append, clock=clock, escape_log_window=60.0) as sock, Client(sock) as c:
        for _ in range(3):
            with pytest.raises(EscapeError):
                c.stat("../x")
        with pytest.raises(EscapeError):
            c.lstat("../other")  # another path: its own line
        first = f"beneathd: escape refused: {ME} method=stat path='../x': path escapes the root"
        other = f"beneathd: escape refused: {ME} method=lstat path='../other': path escapes the root"
        assert _escapes(logs) == [first, other]
        clock.now += 59.9
        with pytest.raises(EscapeError):
            c.readlink("../x")  # still within the window (another method, the same path)
        assert _escapes(logs) == [first, other]
        clock.now += 0.2  # the window has passed: the next escape closes it first
        with pytest.raises(EscapeError):
            c.stat("../x")
        assert _escapes(logs) == [first, other,
                                  f"beneathd: escape refused: {ME} path='../x': 3 more in 60 s, not logged",
                                  first]
        assert c.stats()["escapes"] == 6  # every one is counted, logged or not


def test_rate_limit_summary_without_a_new_escape() -> None:
    clock = Clock()
    logs: list[str] = []
    el = EscapeLog(logs.append, window=60.0, clock=clock)
    peer, other = PeerCred(10, 1000, 1000), PeerCred(11, 1000, 1000)
    e = EscapeError(b"../x")
    el.refused(peer, "stat", e)
    el.refused(peer, "stat", e)
    el.refused(other, "stat", e)  # another peer (pid): its own line
    el.refused(peer, "stat", EscapeError("../x"))  # str or bytes: the same path
    assert len(logs) == 2 and "pid=11" in logs[1]
    el.flush()
    assert len(logs) == 2  # the window is still open
    clock.now += 60
    el.flush()
    assert logs[2:] == ["beneathd: escape refused: pid=10 uid=1000 gid=1000 path='../x': 2 more in 60 s, not logged"]
    assert el.pending == 0  # nothing more for the other peer: no summary, and its window is gone
    el.flush()
    assert len(logs) == 3


def test_rate_limit_table_is_bounded() -> None:
    """A peer that makes up a new path for every escape cannot grow the table: beyond
    max_pairs its escapes are counted together, then summed up in one line."""
    clock = Clock()
    logs: list[str] = []
    el = EscapeLog(logs.append, window=60.0, clock=clock, max_pairs=4)
    peer = PeerCred(10, 1000, 1000)
    for i in range(100):
        el.refused(peer, "stat", EscapeError(f"../{i}"))
    assert len(logs) == 4 and el.pending == 4
    clock.now += 60
    el.flush()
    assert logs[4:] == ["beneathd: escape refused: 96 more from other peers or paths in 60 s, not logged "
                        "(more than 4 pairs at once)"]
    assert el.pending == 0


def test_escape_without_a_usable_path_is_still_logged() -> None:
    logs: list[str] = []
    el = EscapeLog(logs.append)
    el.refused(PeerCred(10, 1000, 1000), "stat", EscapeError())
    el.refused(PeerCred(10, 1000, 1000), "stat", EscapeError(42))  # (never raises)
    assert logs == ["beneathd: escape refused: pid=10 uid=1000 gid=1000 method=stat path=?: path escapes the root",
                    "beneathd: escape refused: pid=10 uid=1000 gid=1000 method=stat path=42: path escapes the root"]


# -- the counters --------------------------------------------------------------------------------


def test_counters(root_dir: Path) -> None:
    """calls, errors and escapes, inline and in worker threads; a batch counts its calls
    (those it ran), not itself; connections open and since the start."""
    with server_thread(root_dir) as sock, Client(sock) as c:
        assert c.stats() == {"calls": 1, "errors": 0, "escapes": 0, "connections": 1, "connections_total": 1,
                             "peers_refused": 0}
        c.stat(".")
        with pytest.raises(FileNotFoundError):
            c.stat("nope")
        with pytest.raises(EscapeError):
            c.stat("../x")
        # 4 calls, 2 errors, 1 escape
        r = c.batch([("stat", "."), ("stat", "../y"), ("stat", "nope")])
        assert isinstance(r[1], EscapeError) and isinstance(r[2], FileNotFoundError)
        r = c.batch([("stat", "nope"), ("stat", ".")], stop_on_error=True)  # runs one
        assert r[1] is None
        # 8 calls, 5 errors, 2 escapes; then long ones, in worker threads: a call, a batch
        with pytest.raises(EscapeError):
            c.du("..")
        r = c.batch([("listdir", "."), ("listdir", "../q")])
        assert isinstance(r[1], EscapeError)
        with Client(sock) as c2:
            st = c2.stats()
        assert st == {"calls": 12, "errors": 7, "escapes": 4, "connections": 2, "connections_total": 2,
                      "peers_refused": 0}
        with c.watch("."):  # ended by the client's cancel (ECANCELED): not an error
            pass
        st = c.stats()
        assert (st["calls"], st["errors"]) == (14, 7)


def test_stats_for_a_read_only_peer_and_refusals_counted(root_dir: Path) -> None:
    ro = Policy({54321}, set(), {os.geteuid()}, set())
    with server_thread(root_dir, policy=ro, max_connections=1) as sock, Client(sock) as c:
        with pytest.raises(PermissionError) as ei:
            c.mkdir("d")  # refused by the read-only rule: a call answered with an error
        assert ei.value.errno == errno.EACCES
        r = c.batch([("mkdir", "d"), ("stat", ".")])
        assert isinstance(r[0], PermissionError)
        with pytest.raises(OSError) as ei2:
            with Client(sock) as c2:  # over max_connections: refused
                c2.stat(".")
        assert ei2.value.errno == errno.EAGAIN
        assert c.stats() == {"calls": 4, "errors": 2, "escapes": 0, "connections": 1, "connections_total": 1,
                             "peers_refused": 1}
    assert not (root_dir / "d").exists()


def test_stats_cannot_be_batched(root_dir: Path) -> None:
    with server_thread(root_dir) as sock, Client(sock) as c:
        with pytest.raises(ValueError, match="cannot be batched"):
            c.batch([("stat", "."), ("stats",)])


def test_root_has_no_stats() -> None:
    from beneathd.daemon import Root

    assert not hasattr(Root, "stats")  # in-process there is no daemon to count (Method.daemon)


def test_async_client_stats(root_dir: Path) -> None:
    async def main(sock: str) -> dict[str, int]:
        async with AsyncClient(sock) as c:
            with pytest.raises(EscapeError):
                await c.stat("../x")
            return await c.stats()

    with server_thread(root_dir) as sock:  # (its own trio loop, in a thread)
        st = trio.run(main, sock)
    assert (st["calls"], st["errors"], st["escapes"], st["connections"]) == (2, 1, 1, 1)


# -- beneathd-ctl stats --------------------------------------------------------------------------


def _ctl(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "-S", sock, *args],
                          capture_output=True, text=True, timeout=60)


def test_ctl_stats(root_dir: Path) -> None:
    with server_thread(root_dir) as sock:
        with Client(sock) as c, pytest.raises(EscapeError):
            c.stat("../x")
        r = _ctl(sock, "stats")
        assert r.returncode == 0, r.stderr
        rows = dict(line.split() for line in r.stdout.splitlines())
        # its own call is the second (the first client may not have been seen leaving yet)
        assert rows.pop("connections") in ("1", "2")
        assert rows == {"calls": "2", "errors": "1", "escapes": "1", "connections_total": "2", "peers_refused": "0"}
        r = _ctl(sock, "--json", "stats")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["ok"] and doc["errors"] == [] and len(doc["results"]) == 1
        st = doc["results"][0]
        assert 1 <= st.pop("connections") <= 3
        assert st == {"calls": 3, "errors": 1, "escapes": 1, "connections_total": 3, "peers_refused": 0}


# -- systemd's STATUS= line ----------------------------------------------------------------------


def test_status_text() -> None:
    from beneathd.daemon.serve import status_text

    assert status_text({"calls": 1234, "errors": 5, "escapes": 2, "connections": 3, "connections_total": 17,
                        "peers_refused": 1}) == \
        "serving: 3 connections (17 since start, 1 refused), 1234 calls, 5 errors, 2 escapes refused"


async def test_status_on_notify_socket(root_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """READY=1 comes with a first STATUS= line; the line is sent again once the counters
    changed (a real NOTIFY_SOCKET, bound here; the daemon looks every status_interval)."""
    from beneathd.daemon import Root, serve
    from beneathd.daemon.server import Server, ServerConfig

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    path = str(tmp_path / "s")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    lsock.bind(path)
    lsock.listen(8)
    logs: list[str] = []

    async def message() -> str:
        await trio.lowlevel.wait_readable(notify)
        return notify.recv(4096).decode()

    def work() -> None:
        with Client(path) as c:
            c.stat(".")
            with pytest.raises(EscapeError):
                c.stat("../x")

    with notify, lsock, Root(str(root_dir)) as root:
        server = Server(root, lsock, ServerConfig(policy=Policy({os.geteuid()}), log=logs.append))
        with trio.fail_after(60):  # (against a hang; nothing here is timed)
            async with trio.open_nursery() as n:
                n.start_soon(serve.run, server, None, 0.01)
                assert await message() == ("READY=1\nSTATUS=serving: 0 connections (0 since start, 0 refused), "
                                           "0 calls, 0 errors, 0 escapes refused")
                await trio.to_thread.run_sync(work)
                want = "STATUS=serving: 0 connections (1 since start, 0 refused), 2 calls, 1 errors, 1 escapes refused"
                seen: list[Any] = []
                while not seen or seen[-1] != want:
                    seen.append(await message())
                    assert seen[-1].startswith("STATUS=serving: "), seen
                n.cancel_scope.cancel()
    assert len(_escapes(logs)) == 1
