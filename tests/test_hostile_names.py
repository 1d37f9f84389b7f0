"""Hostile trees a project user can build, beyond depth (tests/test_deep_trees.py): names of
255 bytes, paths at PATH_MAX, and directories too big for one message.

- A 255-byte name works through every kind of call (create, stat, list, rename, link,
  cp -r, rm -r, walk); 256 bytes is ``ENAMETOOLONG`` as from ``os``, never a truncation.
- A path of 4095 bytes (PATH_MAX less its NUL) resolves; 4096 is ``ENAMETOOLONG``, the
  same as ``os`` on the same path relative to the root.
- A ``listdir`` bigger than the message limit is ``EFBIG`` naming ``walk()``, which pages
  it (the message limit is lowered here so that 5,000 names are enough); ``scandir`` has
  no limit (the daemon passes a big listing in a memfd).
- ``BENEATHD_HUGE=1``: the real daemon on a directory of 1,000,000 entries (listdir, walk,
  scandir, du, rm -r), daemon RSS printed (the figures in
  docs/SECURITY.md, "Hostile trees: wide directories and long names").
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import empty_files, tmpfs  # noqa: E402
from backends import server_thread  # noqa: E402

N255 = "n" * 250 + ".name"   # 255 bytes
N256 = N255 + "x"


def _os_errno(fn: Any) -> int | None:
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def test_255_byte_names_through_every_kind_of_call(fs: Any, root_dir: Path) -> None:
    fs.mkdir(N255)
    fs.write_file(f"{N255}/{N255}", b"long")
    assert fs.listdir(N255) == [N255]
    assert fs.stat(f"{N255}/{N255}").st_size == 4
    fs.symlink(N255, f"{N255}/l")
    fs.link(f"{N255}/{N255}", f"{N255}/h")
    fs.rename(f"{N255}/{N255}", f"{N255}/{N255[:-1]}m")
    fs.cp(N255, "copy", recursive=True)
    assert sorted(fs.listdir("copy")) == sorted([N255[:-1] + "m", "l", "h"])
    assert [len(top) for top, _d, _f in fs.walk(".") if top.endswith(N255)] == [255]
    fs.rm(N255, recursive=True)
    fs.rm("copy", recursive=True)
    assert fs.listdir(".") == [p for p in os.listdir(root_dir)]
    for call in (lambda: fs.mkdir(N256), lambda: fs.write_file(N256, b""), lambda: fs.stat(N256),
                 lambda: fs.rename("dir", N256)):
        with pytest.raises(OSError) as ei:
            call()
        assert ei.value.errno == errno.ENAMETOOLONG
        assert _os_errno(lambda: os.stat(root_dir / N256)) == errno.ENAMETOOLONG


def test_paths_at_path_max(fs: Any, root_dir: Path) -> None:
    """Directories of 200-byte names down to a path of 4095 bytes (PATH_MAX less the NUL)."""
    rel = ""
    while len(rel) + 201 < 4095 - 10:
        rel = f"{rel}/{'d' * 200}" if rel else "d" * 200
    fd = os.open(root_dir, os.O_PATH)
    try:
        cur = os.open(root_dir, os.O_PATH)
        for part in rel.split("/"):
            os.mkdir(part, dir_fd=cur)
            nxt = os.open(part, os.O_PATH, dir_fd=cur)
            os.close(cur)
            cur = nxt
        os.close(cur)
        name = "f" * (4095 - len(rel) - 1)
        fs.write_file(f"{rel}/{name}", b"at PATH_MAX")
        full = f"{rel}/{name}"
        assert len(full.encode()) == 4095
        assert fs.read_file(full) == b"at PATH_MAX"
        assert fs.stat(full).st_size == 11
        too_long = full + "/x"
        for call in (lambda: fs.stat(too_long), lambda: fs.write_file(too_long, b""), lambda: fs.mkdir(too_long)):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.ENAMETOOLONG, ei.value
        assert _os_errno(lambda: os.stat(too_long, dir_fd=fd)) == errno.ENAMETOOLONG
        fs.rm(rel.split("/")[0], recursive=True)
    finally:
        os.close(fd)


def test_listing_too_big_for_a_message_names_walk(root_dir: Path) -> None:
    from beneathd.client import Client

    empty_files(root_dir / "big", 5000)
    with server_thread(root_dir, max_message=32 * 1024) as sock, Client(sock) as c:
        with pytest.raises(OSError) as ei:
            c.listdir("big")
        assert ei.value.errno == errno.EFBIG and "walk()" in str(ei.value), ei.value
        assert sum(len(files) for _top, _dirs, files in c.walk("big")) == 5000
        # scandir has no message limit: a listing too big for one goes in a passed memfd
        ents = c.scandir("big")
        assert len(ents) == 5000 and {e.name for e in ents} == {f"entry-{i:05d}" for i in range(5000)}
        assert all(e.is_file() and e.stat().st_size == 0 for e in ents)
        assert c.stat("big").st_nlink >= 2  # and the connection serves on


@pytest.mark.skipif(os.environ.get("BENEATHD_HUGE") != "1", reason="1,000,000 entries: BENEATHD_HUGE=1")
def test_a_million_entries_through_the_daemon(tmp_path: Path) -> None:
    from bench.bench_load import DaemonProc
    from beneathd.client import Client

    with tmpfs(tmp_path / "t", size="2g") as base:
        os.chmod(base, 0o755)
        d = DaemonProc(base=str(base))
        n = 1_000_000
        empty_files(os.path.join(d.root, "big"), n, "file-{:07d}")
        d.chown_tree(d.root)

        def rss() -> int:
            with open(f"/proc/{d.pid}/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024

        with d, Client(d.socket, timeout=600) as c:
            print(f"\nidle RSS {rss()} MiB")
            for name, call, want in (
                ("listdir", lambda: len(c.listdir("big")), n),
                ("walk", lambda: sum(len(f) for _t, _d, f in c.walk("big")), n),
                ("scandir", lambda: sum(e.is_file() for e in c.scandir("big")), n),
                ("du", lambda: c.du("big")[1], n + 1),
                ("rm -r", lambda: c.rm("big", recursive=True), None),
            ):
                t = time.monotonic()
                assert call() == want
                print(f"{name}: {time.monotonic() - t:.1f} s, daemon RSS {rss()} MiB")
            assert c.listdir(".") == []
