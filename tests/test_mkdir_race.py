"""``mkdir -p`` racing itself and racing a removal (filepath-securejoin's racing MkdirAll tests).

Ported from filepath-securejoin's ``TestMkdirAllHandle_RacingCreate`` (many threads make the
same deep path at once: every call succeeds) and ``TestMkdirAllHandle_RacingDelete`` (an
ancestor is removed with ``rm -r`` meanwhile: a call succeeds or fails with "not found",
never anything else).  Here the ``exist_ok`` check of ``mkdir(parents=True, exist_ok=True)``
used to be a second look: ``mkdir`` said ``EEXIST``, then a ``stat`` found the name gone
and the call raised ``FileExistsError`` for a path that did not exist.

Each test runs over ``Root`` in-process (one ``Root`` shared by every thread) and over the
daemon backends (one server, one client per thread: a connection serves its calls one
after the other).  The amount of work is fixed (calls, not seconds) and only outcomes are
asserted: a run that happens not to hit the window passes, as it should.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from backends import BACKENDS, AsyncAdapter, server_thread
from race_harness import snapshot

DEEP = "/".join("abcdefghijklmnop")  # 16 levels


@contextlib.contextmanager
def several(name: str, root_dir: Path, n: int) -> Iterator[list[Any]]:
    """``n`` handles on ``root_dir`` for ``n`` threads: the one ``Root``, or ``n`` clients of
    one daemon."""
    if name == "root":
        with BACKENDS["root"](root_dir) as fs:
            yield [fs] * n
        return
    from beneathd.client import Client

    with server_thread(root_dir) as path, contextlib.ExitStack() as stack:
        if name == "client":
            yield [stack.enter_context(Client(path)) for _ in range(n)]
        else:
            loop = "asyncio" if name == "asyncio" else "trio"
            yield [stack.enter_context(AsyncAdapter(path, loop)) for _ in range(n)]


def _in_threads(handles: list[Any], work: Any) -> list[BaseException]:
    """Run ``work(i, fs)`` in one thread per handle, all released at once; what they raised."""
    start = threading.Barrier(len(handles))
    errors: list[BaseException] = []

    def run(i: int, fs: Any) -> None:
        start.wait()
        try:
            work(i, fs)
        except BaseException as e:  # noqa: BLE001 - every failure is reported
            errors.append(e)

    ts = [threading.Thread(target=run, args=(i, fs), daemon=True) for i, fs in enumerate(handles)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    return errors


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_racing_create(backend: str, root_dir: Path) -> None:
    """64 threads make the same 16-level path at once, 8 times over: every call succeeds."""
    rounds = 8
    with several(backend, root_dir, 64) as handles:
        for r in range(rounds):
            path = f"r{r}/{DEEP}"
            errors = _in_threads(handles, lambda i, fs: fs.mkdir(path, 0o711, parents=True, exist_ok=True))
            assert not errors, f"round {r}: {len(errors)} of 64 calls failed, e.g. {errors[0]!r}"
            assert (root_dir / path).is_dir()
    assert sorted(os.listdir(root_dir)) == [f"r{r}" for r in range(rounds)]


# (what rm -r removes, what mkdir -p makes): securejoin's rm-top, rm-existing, rm-nonexisting
DELETE_CASES = {
    "rm-top": ("target", "target/a/b/c/d/e/f/g/h/i/j/k"),
    "rm-existing": ("target/a/b/c", "target/a/b/c/d/e/f/g/h/i/j/k"),
    "rm-nonexisting": ("target/a/b/c/d/e", "target/a/b/c/d/e/f/g/h/i/j/k"),
}


@pytest.mark.parametrize("case", sorted(DELETE_CASES))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_racing_delete(backend: str, case: str, tmp_path: Path, root_dir: Path, outside: Path) -> None:
    """While a thread removes an ancestor with ``rm -r`` over and over, 4 threads call
    ``mkdir(parents=True, exist_ok=True)`` on a path below it: each call succeeds or raises
    ``FileNotFoundError`` / ``NotADirectoryError``, never ``FileExistsError``; nothing
    outside the root changes."""
    rm_path, mk_path = DELETE_CASES[case]
    calls = 400 if backend == "root" else 150
    (root_dir / "target" / "a" / "b" / "c").mkdir(parents=True)
    beside = sorted(os.listdir(tmp_path))
    before = snapshot(outside)
    outcomes: dict[str, int] = {}
    bad: list[BaseException] = []
    lock = threading.Lock()
    done = threading.Event()

    def remover() -> None:
        victim = root_dir / rm_path
        while not done.is_set():
            shutil.rmtree(victim, ignore_errors=True)

    def work(i: int, fs: Any) -> None:
        for _ in range(calls):
            try:
                fs.mkdir(mk_path, 0o711, parents=True, exist_ok=True)
                what = "ok"
            except (FileNotFoundError, NotADirectoryError) as e:
                what = type(e).__name__
            except OSError as e:
                with lock:
                    bad.append(e)
                what = type(e).__name__
            with lock:
                outcomes[what] = outcomes.get(what, 0) + 1

    rm = threading.Thread(target=remover, daemon=True)
    with several(backend, root_dir, 4) as handles:
        rm.start()
        try:
            errors = _in_threads(handles, work)
        finally:
            done.set()
            rm.join(30)
    print(f"\n{backend} {case}: {outcomes}")
    assert not errors, errors
    assert not bad, f"{len(bad)} calls raised other than success or not-found, e.g. {bad[0]!r}; {outcomes}"
    assert sum(outcomes.values()) == 4 * calls
    assert sorted(os.listdir(tmp_path)) == beside
    assert snapshot(outside) == before
