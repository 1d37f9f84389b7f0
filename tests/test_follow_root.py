"""The root replaced by the operator (a volume restored from backup, a new mount over it).

Without ``--follow-root`` the daemon keeps serving the directory it opened: writes go to
the old tree, wherever it now is (the documented behaviour: docs/SECURITY.md, "The root
replaced by the operator").  With it, the daemon notices within its interval, logs it and exits
with 75, so that systemd (``Restart=on-failure``) starts it again on the new directory;
started again, it serves the new tree and the old one is left as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import DaemonProc  # noqa: E402
from beneathd.client import Client  # noqa: E402
from beneathd.daemon.serve import EXIT_ROOT_REPLACED  # noqa: E402


def _replace_root(d: DaemonProc) -> str:
    """Move the root aside and put a fresh directory at its path; return the old one's path."""
    old = d.root + ".old"
    os.rename(d.root, old)
    os.mkdir(d.root)
    d.chown(d.root)
    return old


def test_without_follow_root_the_old_tree_is_served() -> None:
    with DaemonProc() as d, Client(d.socket, timeout=10) as c:
        c.write_file("a", b"1")
        old = _replace_root(d)
        c.write_file("b", b"2")
        assert sorted(os.listdir(old)) == ["a", "b"]
        assert os.listdir(d.root) == []
        assert d.proc is not None and d.proc.poll() is None


@pytest.mark.parametrize("how", ["directory", "mount"])
def test_follow_root_exits_to_be_started_on_the_new_root(how: str) -> None:
    d = DaemonProc("--follow-root", "--follow-root-interval", "0.05")
    mounted = False
    try:
        d.start()
        with Client(d.socket, timeout=10) as c:
            c.write_file("a", b"1")
        if how == "mount":
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "restored", d.root], capture_output=True)
            if r.returncode:
                pytest.skip(f"cannot mount a tmpfs here: {r.stderr!r}")
            mounted = True
            d.chown(d.root)
            old = None
        else:
            old = _replace_root(d)
        assert d.proc is not None
        assert d.proc.wait(30) == EXIT_ROOT_REPLACED, d.log()
        assert "--follow-root:" in d.log() and "is now another directory" in d.log(), d.log()
        d.start()  # what systemd's Restart=on-failure does
        with Client(d.socket, timeout=10) as c:
            assert c.listdir(".") == []
            c.write_file("b", b"2")
        assert os.listdir(d.root) == ["b"]
        if old is not None:
            assert os.listdir(old) == ["a"]
    finally:
        d.stop()
        if mounted:
            subprocess.run(["umount", "-l", d.root], check=False)
        d.close()


def test_follow_root_keeps_serving_while_the_root_stays() -> None:
    with DaemonProc("--follow-root", "--follow-root-interval", "0.02") as d, Client(d.socket, timeout=10) as c:
        for i in range(20):
            c.write_file(f"f{i}", b"x")
            time.sleep(0.01)
        assert d.proc is not None and d.proc.poll() is None
        assert len(os.listdir(d.root)) == 20
