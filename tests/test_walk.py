"""walk(): pathlib.Path.walk beneath the root, over Root, Client and AsyncClient; streamed
with bounded memory through the daemon; escapes; deep trees; cancelling an abandoned walk."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from _util import EscapeError, tmpfs
from backends import server_thread
from beneathd.client import Client


def reference(root: Path, top: str = ".", top_down: bool = True) -> list[tuple[str, list[str], list[str]]]:
    """pathlib.Path.walk's answer (Python 3.12), written out: symlinks are files; paths
    relative to the root, the top as given."""
    out: list[tuple[str, list[str], list[str]]] = []

    def rec(rel: str) -> None:
        dirs, files = [], []
        with os.scandir(root / rel) as it:
            for e in it:
                (dirs if e.is_dir(follow_symlinks=False) else files).append(e.name)
        item = (rel, sorted(dirs), sorted(files))
        if top_down:
            out.append(item)
        for d in sorted(dirs):
            rec(d if rel == "." else os.path.join(rel, d))
        if not top_down:
            out.append(item)

    rec(top)
    return out


def _norm(walk: Any) -> list[tuple[Any, list[Any], list[Any]]]:
    return [(p, sorted(d), sorted(f)) for p, d, f in walk]


def _tree(r: Path) -> None:
    (r / "a" / "b" / "c").mkdir(parents=True)
    (r / "a" / "f").write_text("x")
    (r / "g").write_text("y")
    (r / "a" / "b" / "h").write_text("z")
    os.symlink("a", r / "la")            # an in-tree link to a directory
    os.symlink("/etc", r / "out")        # a link out
    os.symlink("..", r / "a" / "b" / "up")  # a link back up: a loop if followed
    os.symlink("nowhere", r / "dangling")


def test_walk_equals_the_reference(fs: Any, root_dir: Path) -> None:
    _tree(root_dir)
    for top_down in (True, False):
        got = _norm(fs.walk(".", top_down=top_down))
        assert sorted(got) == sorted(reference(root_dir, ".", top_down))
        if top_down:
            assert got[0][0] == "."  # the top first
        else:
            assert got[-1][0] == "."  # the top last
    assert sorted(_norm(fs.walk("a"))) == sorted(reference(root_dir, "a"))
    got_b = _norm(fs.walk(b"a"))
    assert got_b[0] == (b"a", [b"b"], [b"f"])


def test_walk_names_in_every_encoding(fs: Any, root_dir: Path) -> None:
    """Names that are not UTF-8, or hold newlines, spaces and lone surrogate-making bytes,
    come back as os.fsdecode (str) and os.fsencode (bytes) give them: the walk splits a
    directory's names out of one buffer and decodes a page's names in one call."""
    rb = os.fsencode(root_dir)
    odd = [b"\xff", b"a\xc3", b"\xc3\xa9t\xc3\xa9", b"new\nline", b" sp ", b"\xed\xa0\x80", b"\xe2\x82"]
    for n in odd:
        os.mkdir(rb + b"/d" + n)
        with open(rb + b"/d" + n + b"/f" + n, "wb"):
            pass
        with open(rb + b"/" + n, "wb"):
            pass
    want_b = sorted((os.fsencode(p), sorted(map(os.fsencode, d)), sorted(map(os.fsencode, f)))
                    for p, d, f in reference(root_dir))
    assert sorted(_norm(fs.walk(b"."))) == want_b
    assert sorted(_norm(fs.walk("."))) == sorted(reference(root_dir))


def test_walk_prunes_in_place(fs: Any, root_dir: Path) -> None:
    _tree(root_dir)
    (root_dir / "skip" / "deep").mkdir(parents=True)
    seen = []
    for dirpath, dirnames, filenames in fs.walk("."):
        seen.append(dirpath)
        if "skip" in dirnames:
            dirnames.remove("skip")
        if dirpath == "a":
            dirnames.clear()
    assert sorted(seen) == [".", "a"]


def test_walk_follow_symlinks_in_tree_only_and_never_loops(fs: Any, root_dir: Path) -> None:
    _tree(root_dir)
    got = {p: (sorted(d), sorted(f)) for p, d, f in fs.walk(".", follow_symlinks=True)}
    assert got["."] == (["a", "la"], ["dangling", "g", "out"])  # out and dangling stay files
    assert got["la"] == (["b"], ["f"]) and got["la/b"] == (["c"], ["h", "up"])  # up: back to a walked dir
    assert "la/b/up" not in got and "a/b/up" not in got


def test_walk_escapes_and_errors(fs: Any, root_dir: Path) -> None:
    _tree(root_dir)
    for top in ("..", "out", "out/", "/etc", "a/../../x"):
        with pytest.raises(EscapeError):
            list(fs.walk(top))
    with pytest.raises(FileNotFoundError):
        list(fs.walk("nope"))
    with pytest.raises(NotADirectoryError):
        list(fs.walk("g"))


def test_walk_deep_tree_holds_few_fds(fs: Any, root_dir: Path) -> None:
    p = root_dir / "deep"
    for _ in range(300):
        p = p / "d"
    p.mkdir(parents=True)
    (p / "bottom").write_text("b")
    fds_before = len(os.listdir("/proc/self/fd"))
    it = iter(fs.walk("deep"))
    n = 0
    peak = 0
    for dirpath, dirnames, filenames in it:
        n += 1
        peak = max(peak, len(os.listdir("/proc/self/fd")) - fds_before)
    assert n == 301 and filenames == ["bottom"]
    assert peak <= 80, peak  # 64 directory fds at most, wherever the walk runs


def test_walk_is_streamed_with_bounded_daemon_memory(tmp_path: Path) -> None:
    """A 200k-entry tree through the daemon: the first tuple arrives before the walk ends,
    and the daemon (in-process here: this process's peak RSS) grows under 32 MiB while the
    client consumes slowly at first."""
    import resource

    with tmpfs(tmp_path / "r") as r:
        for d in range(400):
            sub = r / f"d{d:03}"
            sub.mkdir()
            for f in range(500):
                (sub / f"file-{f:04}-{'x' * 20}").touch()
        with server_thread(r) as path, Client(path) as c:
            t0 = time.monotonic()
            it = iter(c.walk("."))
            first = next(it)
            t_first = time.monotonic() - t0
            assert first[0] == "." and len(first[1]) == 400
            time.sleep(0.5)  # a slow consumer: the daemon must not walk ahead unbounded
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            total = 1 + len(first[2])
            for _, dn, fn in it:
                total += len(fn)
            t_all = time.monotonic() - t0
            growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        assert total == 1 + 400 * 500
        assert t_first < t_all
        print(f"\nwalk of 200,400 entries: first tuple after {t_first * 1e3:.1f} ms, all after {t_all:.2f} s, "
              f"peak RSS growth (daemon and client in one process) {growth:.1f} MiB")
        assert growth < 32


def test_abandoned_walk_is_cancelled(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "r") as r:
        for d in range(50):
            (r / f"d{d}").mkdir()
        with server_thread(r) as path, Client(path) as c:
            for _ in range(20):
                it = c.walk(".")
                next(iter(it))
                it.close()  # stops early: the daemon is told to stop
            assert c.exists("d0")  # the connection is fine
            assert sum(1 for _ in c.walk(".")) == 51


def test_walk_progress(fs: Any, root_dir: Path) -> None:
    _tree(root_dir)
    seen: list[Any] = []
    tuples = list(fs.walk(".", progress=seen.append))
    total = 1 + sum(len(d) + len(f) for _, d, f in tuples)
    assert seen and seen[-1].entries == total and seen[-1].bytes == 0
    assert all(a.entries <= b.entries for a, b in zip(seen, seen[1:]))
