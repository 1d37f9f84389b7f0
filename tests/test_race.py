"""Symlink-swap races (libpathrs style) for every mutator and read, through every backend.

An attacker thread flips ``root/a/b`` (a real directory) with ``root/a/b_link -> outside``
by ``renameat2(RENAME_EXCHANGE)`` (variant ``interior``), flips the final component
(``final``), or flips the root directory itself with a link to outside while it is held
(``root``); a worker calls one operation on ``a/b/...`` in a loop.  ``Root`` and the daemon
backends must show 0 escapes; the deliberately naive implementation (tests/naive.py) must
be caught by the very same harness, or the harness proves nothing.

Short by default (``BENEATHD_RACE_SECONDS``, 0.2 s per case for Root, 0.1 s over the daemon).  Figures go to stdout (run with
``-s``) and, with ``BENEATHD_RACE_LOG=FILE``, one JSON line per case.  The long run
(>= 100k swaps per operation) is documented in docs/SECURITY.md::

    BENEATHD_RACE_SWAPS=100000 BENEATHD_RACE_LOG=race.jsonl .venv/bin/pytest -s tests/test_race.py -k 'root-'
"""

from __future__ import annotations

import os
import stat as _stat
from pathlib import Path
from typing import Any, Iterator

import pytest

import race_harness as rh
from backends import BACKENDS
from naive import NaiveRoot

IMPLS = [*sorted(BACKENDS), "naive"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest, root_dir: Path) -> Iterator[tuple[str, Any]]:
    name = request.param
    if name == "naive":
        with NaiveRoot(root_dir) as fs:
            yield name, fs
    else:
        with BACKENDS[name](root_dir) as fs:
            yield name, fs


def _final_prep(op: rh.Op, leaf: str, target: str, is_dir: bool):  # type: ignore[no-untyped-def]
    """Keep both swapped names alive: an op may remove (or replace) either of them."""

    def prep(bfd: int, i: int) -> None:
        if op.prep is not None:
            op.prep(bfd, i)
        names = {}
        for n in (leaf, f"{leaf}_link"):
            try:
                names[n] = _stat.S_ISLNK(os.lstat(n, dir_fd=bfd).st_mode)
            except OSError:
                names[n] = None
        have_link = any(v is True for v in names.values())
        have_real = any(v is False for v in names.values())
        for n, v in names.items():
            if v is not None:
                continue
            try:
                if not have_link:
                    os.symlink(target, n, dir_fd=bfd)
                    have_link = True
                elif not have_real:
                    if is_dir:
                        os.mkdir(n, dir_fd=bfd)
                    else:
                        rh._ensure_file(bfd, n)
                    have_real = True
            except OSError:
                pass

    return prep


def _run(impl: tuple[str, Any], tmp_path: Path, root_dir: Path, outside: Path, where: str,
         opname: str) -> rh.Result:
    name, fs = impl
    leaf = "rmd" if (where == "final" and opname == "rm_r") else "victim"
    lay = rh.make_layout(tmp_path, root_dir, outside, where, leaf)
    op = rh.OPS[opname]
    if where == "final":
        target = os.path.relpath(outside / leaf, root_dir / "a" / "b")
        op = rh.Op(op.name, op.call, _final_prep(op, leaf, target, leaf == "rmd"), op.leaked)
    try:
        if name == "naive":
            budget = rh._env_float("BENEATHD_RACE_NAIVE_SECONDS", 10.0)
            res = rh.run_race(fs, lay, op, name, seconds=budget, stop_on_escape=True, check_every=1)
        else:
            # the daemon backends get half the time by default (the whole file stays short)
            secs = rh._env_float("BENEATHD_RACE_SECONDS", 0.2 if name == "root" else 0.1)
            res = rh.run_race(fs, lay, op, name, seconds=secs)
    finally:
        lay.close()
    print("\n" + res.line() + (f" first escape at call {res.first_escape_call}: {res.changed[:1]}"
                               if res.escapes else ""))
    return res


def _assert(res: rh.Result, impl: str) -> None:
    assert res.swaps > 0, f"the attacker never swapped: {res.line()}"
    assert res.calls > 0, f"the worker never ran: {res.line()}"
    if impl == "naive":
        assert res.escapes >= 1, f"the harness did not catch the naive implementation: {res.line()}"
    else:
        assert res.escapes == 0, f"ESCAPE: {res.line()}\n{res.changed}"
        assert not res.unexpected, f"non-OSError exceptions: {res.unexpected}"


@pytest.mark.parametrize("opname", sorted(rh.OPS))
def test_race_interior(impl: tuple[str, Any], tmp_path: Path, root_dir: Path, outside: Path,
                       opname: str) -> None:
    """``a/b`` flips between a directory and a link to outside."""
    _assert(_run(impl, tmp_path, root_dir, outside, "interior", opname), impl[0])


@pytest.mark.parametrize("opname", [*rh.FINAL_OPS, "rm_r"])
def test_race_final(impl: tuple[str, Any], tmp_path: Path, root_dir: Path, outside: Path,
                    opname: str) -> None:
    """The final component flips between a file (or a directory for rm -r) and a link out."""
    if impl[0] == "naive" and opname == "write_file":
        pytest.skip("naive write_file renames a temporary over the name, which does not follow a "
                    "final link: there is no final-component window to catch")
    if impl[0] == "naive" and opname == "rm_r":
        # the window (lstat says dir, then os.walk follows the swapped-in link, then each
        # unlink must still see the link) is real -- test_naive_rm_r_final_window_exists
        # hits it deterministically -- but too narrow to hit reliably within the budget
        pytest.xfail("naive rm -r final-component window is too narrow for the timed harness")
    _assert(_run(impl, tmp_path, root_dir, outside, "final", opname), impl[0])


ROOT_SWAP_OPS = ["mkdir", "write_file", "open_w", "open_atomic", "unlink", "rename", "chmod", "truncate",
                 "copy_file", "cp_r", "rm_r", "symlink", "link", "mkfifo", "stat", "read_file", "listdir",
                 "walk", "du"]


@pytest.mark.parametrize("opname", ROOT_SWAP_OPS)
def test_race_root_swapped(impl: tuple[str, Any], tmp_path: Path, root_dir: Path, outside: Path,
                           opname: str) -> None:
    """The root directory itself flips with a link to outside while it is held."""
    _assert(_run(impl, tmp_path, root_dir, outside, "root", opname), impl[0])


def test_harness_sanity_naive_static_table(root_dir: Path, outside: Path) -> None:
    """The naive implementation is not a strawman: it refuses the simple static escapes."""
    from beneathd.protocol import EscapeError

    os.symlink("../outside", root_dir / "lo")
    with NaiveRoot(root_dir) as fs:
        for p in ("../outside/secret", "lo/secret", str(outside / "secret"), "a/../../outside/secret"):
            with pytest.raises(EscapeError):
                fs.read_file(p)
        with pytest.raises(EscapeError):
            fs.write_file("lo/new", b"x")
        with pytest.raises(EscapeError):
            fs.mkdir("lo/new")
    assert not (outside / "new").exists()


def test_naive_rm_r_final_window_exists(tmp_path: Path, root_dir: Path, outside: Path) -> None:
    """Deterministic swap at the worst moment (CoCalc-style hook): naive rm -r empties the
    outside directory; the same call on Root with the link already in place only unlinks it."""
    import naive

    lay = rh.make_layout(tmp_path, root_dir, outside, "final", "rmd")
    dfd, a, b = lay.swap
    orig = naive._rmtree_by_path

    def hooked(top: str) -> None:
        rh.exchange_at(dfd, a, dfd, b)  # after the lstat check, before the walk
        orig(top)

    naive._rmtree_by_path = hooked
    try:
        with NaiveRoot(root_dir) as fs, pytest.raises(OSError):
            fs.rm("a/b/rmd", recursive=True)
    finally:
        naive._rmtree_by_path = orig
    assert os.listdir(outside / "rmd") == []  # the naive code deleted outside
    lay.close()


def test_root_rm_r_final_link_only_removes_link(fs: Any, root_dir: Path, outside: Path, tmp_path: Path) -> None:
    lay = rh.make_layout(tmp_path, root_dir, outside, "final", "rmd")
    dfd, a, b = lay.swap
    rh.exchange_at(dfd, a, dfd, b)  # "rmd" is now the link to outside/rmd
    before = rh.snapshot(outside)
    fs.rm("a/b/rmd", recursive=True)
    assert not os.path.lexists(root_dir / "a" / "b" / "rmd")
    assert rh.snapshot(outside) == before
    lay.close()


def _flip_forever(root: str, stop: Any) -> None:  # pragma: no cover - child process
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    while not stop.is_set():
        for _ in range(200):
            rh.exchange_at(fd, b"f", fd, b"spare")


def test_write_file_while_final_name_flips_file_and_link(root_dir: Path) -> None:
    """While an attacker flips the final name between a regular file and an in-tree link
    (``spare -> target``), ``write_file("f")`` replaces what it found: the link's target or
    the name itself, every time. The old Python-side final-link resolution (lstat, then
    readlink) failed with a bare EINVAL in ~1% of calls when the name changed kind between
    the two; resolved in C by readlinkat alone, no call may fail."""
    import multiprocessing

    (root_dir / "f").write_bytes(b"old")
    (root_dir / "target").write_bytes(b"target")
    os.symlink("target", root_dir / "spare")
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    p = ctx.Process(target=_flip_forever, args=(str(root_dir), stop), daemon=True)
    p.start()
    failures: list[BaseException] = []
    try:
        from beneathd.daemon import Root

        with Root(root_dir) as fs:
            for i in range(10000):
                try:
                    fs.write_file("f", b"new %d" % i)
                except OSError as e:
                    failures.append(e)
    finally:
        stop.set()
        p.join(10)
    assert not failures, f"{len(failures)} of 10000 failed, e.g. {failures[0]!r}"
    assert sorted(os.listdir(root_dir)) == ["f", "spare", "target"]
