"""``beneathd-ctl`` end to end: a real process against a real daemon (in-process server
thread), every subcommand, coreutils-like messages and exit status, ``--json``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from _util import IS_ROOT
from backends import server_thread


@pytest.fixture
def sock(root_dir: Path) -> Iterator[str]:
    with server_thread(root_dir) as path:
        yield path


def ctl(sock: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "-S", sock, *args],
                          input=stdin, capture_output=True, timeout=60)


def ok(sock: str, *args: str, stdin: bytes = b"") -> str:
    r = ctl(sock, *args, stdin=stdin)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r.stdout.decode()


def test_help_has_examples_and_every_command() -> None:
    r = subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "examples:" in r.stdout and "exit status" in r.stdout
    for name in ("ls", "stat", "du", "tree", "mkdir", "rm", "cp", "mv", "ln", "chmod", "chown", "touch", "truncate",
                 "cat", "put", "get", "watch", "stats"):
        assert name in r.stdout, name
    r = subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "-S", "x", "du", "--help"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "-h" in r.stdout


def test_bad_usage_is_exit_2(sock: str) -> None:
    assert ctl(sock, "nosuch").returncode == 2
    assert ctl(sock, "cp", "onlyone").returncode == 2


def test_every_command(sock: str, root_dir: Path, tmp_path: Path) -> None:
    ok(sock, "mkdir", "-p", "w/a/b")
    ok(sock, "put", "w/a/f", stdin=b"payload")
    assert ok(sock, "cat", "w/a/f") == "payload"
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(300_000))
    ok(sock, "put", "w/big", str(local))
    ok(sock, "get", "w/big", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
    assert not [n for n in os.listdir(tmp_path) if "beneathd-get" in n]
    ok(sock, "ln", "-s", "a/f", "w/link")
    ok(sock, "ln", "w/a/f", "w/hard")
    assert (root_dir / "w" / "hard").stat().st_nlink == 2
    long = ok(sock, "ls", "-l", "w")
    assert "link -> a/f" in long and long.splitlines()[0].startswith("d")
    assert ok(sock, "ls", "w").split() == ["a", "big", "hard", "link"]
    ok(sock, "chmod", "600", "w/a/f")
    assert stat.S_IMODE((root_dir / "w" / "a" / "f").stat().st_mode) == 0o600
    if IS_ROOT:
        ok(sock, "chown", "1234:5678", "w/a/f")
        st = (root_dir / "w" / "a" / "f").stat()
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    ok(sock, "touch", "w/new", "w/a/f")
    assert (root_dir / "w" / "new").read_bytes() == b""
    assert ctl(sock, "touch", "-c", "w/absent").returncode == 0 and not (root_dir / "w" / "absent").exists()
    ok(sock, "truncate", "-s", "3", "w/a/f")
    assert (root_dir / "w" / "a" / "f").read_bytes() == b"pay"
    ok(sock, "cp", "-r", "w", "w2")
    assert (root_dir / "w2" / "big").read_bytes() == local.read_bytes()
    assert os.readlink(root_dir / "w2" / "link") == "a/f"
    ok(sock, "mkdir", "dest")
    ok(sock, "cp", "w/new", "w/big", "dest")  # several sources into a directory
    assert sorted(os.listdir(root_dir / "dest")) == ["big", "new"]
    ok(sock, "mv", "w2", "dest")  # into the directory
    assert (root_dir / "dest" / "w2" / "a" / "f").exists()
    tree = ok(sock, "tree", "dest").splitlines()
    assert tree[0] == "dest" and "dest/big" in tree and "dest/w2/a/f" in tree
    assert ok(sock, "walk", "dest") == "\n".join(tree) + "\n"
    du = ok(sock, "du", "-sh", "dest")
    assert du.endswith("\tdest\n")
    ok(sock, "rm", "-rf", "dest", "missing")
    assert not (root_dir / "dest").exists()


def test_messages_and_exit_status_like_coreutils(sock: str, root_dir: Path) -> None:
    (root_dir / "d").mkdir()
    r = ctl(sock, "stat", "nope")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "beneathd-ctl: cannot stat 'nope': No such file or directory"
    r = ctl(sock, "rm", "d")
    assert r.returncode == 1 and r.stderr.decode().strip() == "beneathd-ctl: cannot remove 'd': Is a directory"
    r = ctl(sock, "cp", "d", "e")
    assert r.returncode == 1 and "-r not specified; omitting directory 'd'" in r.stderr.decode()
    r = ctl(sock, "cat", "../../etc/passwd")
    assert r.returncode == 1 and "escapes the root" in r.stderr.decode()
    r = ctl(sock, "mkdir", "d", "d2")  # one failure, one success: status 1, the other done
    assert r.returncode == 1 and (root_dir / "d2").is_dir()
    r = subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "-S", "/nonexistent/sock", "ls"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot connect to '/nonexistent/sock'" in r.stderr


def test_json_output(sock: str, root_dir: Path) -> None:
    (root_dir / "f").write_bytes(b"12345")
    os.symlink("f", root_dir / "l")
    doc = json.loads(ok(sock, "--json", "ls", "."))
    assert doc["ok"] is True and doc["errors"] == []
    by = {e["name"]: e for e in doc["results"]}
    assert by["f"]["size"] == 5 and by["f"]["type"] == "regular file"
    assert by["l"]["link_target"] == "f" and by["l"]["type"] == "symbolic link"
    doc = json.loads(ok(sock, "--json", "du", "."))
    assert doc["results"][0]["entries"] == 3
    r = ctl(sock, "--json", "stat", "f", "nope")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and [e["path"] for e in doc["results"]] == ["f"]
    assert doc["errors"][0]["code"] == "ENOENT" and doc["errors"][0]["path"] == "nope"
    r = ctl(sock, "--json", "cat", "../x")
    assert json.loads(r.stdout)["errors"][0]["code"] == "EESCAPE"


def test_progress_bar_on_a_terminal(sock: str, root_dir: Path) -> None:
    """With stdout a terminal, long work shows a tqdm bar on stderr (and none otherwise)."""
    import pty

    src = root_dir / "tree"
    src.mkdir()
    for i in range(300):
        (src / f"f{i}").write_bytes(b"x" * 1000)
    master, slave = os.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "beneathd.client.ctl", "-S", sock, "cp", "-r", "tree", "copy"],
                           stdout=slave, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 0, r.stderr
    assert b"entries" in r.stderr and b"cp tree" in r.stderr  # tqdm's line (it ends with the totals)
    quiet = ctl(sock, "cp", "-r", "tree", "copy2")
    assert quiet.returncode == 0 and quiet.stderr == b""
    del pty


def test_watch_prints_events_as_they_come(sock: str, root_dir: Path) -> None:
    """``watch`` streams one line per event (``--json``: one JSON object per line) until
    interrupted; it starts printing once the daemon has the watch in place."""
    import select
    import signal
    import time

    os.mkdir(root_dir / "src")
    for args in ((), ("--json",)):
        p = subprocess.Popen([sys.executable, "-m", "beneathd.client.ctl", "-S", sock, *args, "watch", "src"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.stdout is not None
            lines: list[bytes] = []
            deadline = time.monotonic() + 30
            i = 0
            while not any(b"marker" in ln for ln in lines):  # (until the process's watch is in place)
                assert time.monotonic() < deadline, lines
                (root_dir / "src" / f"marker{i}").write_bytes(b"")
                i += 1
                if select.select([p.stdout], [], [], 0.2)[0]:
                    lines.append(p.stdout.readline())
            new = f"new{len(args)}.txt"
            (root_dir / "src" / new).write_bytes(b"x")
            while not any(new.encode() in ln for ln in lines):
                assert time.monotonic() < deadline, lines
                lines.append(p.stdout.readline())
            line = next(ln for ln in lines if new.encode() in ln)
            if args:
                assert json.loads(line) == {"kind": "created", "path": f"src/{new}", "is_dir": False, "cookie": 0}
            else:
                assert line == f"created\tsrc/{new}\n".encode()
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(10)
    r = ctl(sock, "watch", "nope")
    assert r.returncode == 1 and b"cannot watch 'nope'" in r.stderr


def test_batch_from_a_json_file(sock: str, root_dir: Path, tmp_path: Path) -> None:
    calls = [["mkdir", "b", {"parents": True}], ["write_file", "b/f", "hi"], ["stat", "b/f"], ["listdir", "b"]]
    out = ok(sock, "batch", "-", stdin=json.dumps(calls).encode())
    lines = out.splitlines()
    assert lines[0] == "mkdir\tnull" and lines[3] == 'listdir\t["f"]'
    assert (root_dir / "b/f").read_bytes() == b"hi"
    f = tmp_path / "calls.json"
    f.write_text(json.dumps([["stat", "nope"], ["mkdir", "c"]]))
    r = ctl(sock, "--json", "batch", "--stop-on-error", str(f))
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["errors"][0]["code"] == "ENOENT" and not (root_dir / "c").exists()
    assert ctl(sock, "batch", "-", stdin=b"not json").returncode == 1
    assert ctl(sock, "batch", "-", stdin=b'[["open", "f"]]').returncode == 1
