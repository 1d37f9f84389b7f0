"""Helpers shared by the behaviour, escape and race suites (no fixtures from conftest here)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from beneathd.protocol import EscapeError

__all__ = ["EscapeError", "call_with_timeout", "outcome", "IS_ROOT", "ESCAPE", "tmpfs", "mounted_tmpfs", "du_by_path",
           "empty_files"]

IS_ROOT = os.geteuid() == 0

#: marker for "the call must raise EscapeError"
ESCAPE = "ESCAPE"


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Run fn; ("ok", result) or ("raise", exception)."""
    try:
        return "ok", fn()
    except Exception as e:  # noqa: BLE001 - we classify every failure
        return "raise", e


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "success"
    if isinstance(exc, EscapeError):
        return "EscapeError"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}({errno.errorcode.get(exc.errno or 0, exc.errno)})"
    return type(exc).__name__


def call_with_timeout(fn: Callable[[], Any], timeout: float | None = 5.0, *, stack: int | None = None) -> Any:
    """Run fn in a daemon thread; a hang fails the test instead of hanging the run.
    ``stack``: that thread's stack size in bytes (a walker's C stack must not grow)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001
            box["exc"] = e

    old = threading.stack_size(stack) if stack else None
    try:
        t = threading.Thread(target=run, daemon=True)
        t.start()
    finally:
        if stack:
            threading.stack_size(old or 0)
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"call did not return within {timeout} s (it blocks)")
    if "exc" in box:
        raise box["exc"]
    return box.get("result")


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2g") -> Iterator[Path]:
    """A tmpfs at ``path`` when we may mount (fast to fill and to drop), else a plain dir."""
    path.mkdir()
    mounted = False
    if IS_ROOT:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes=4000000", "tmpfs", str(path)],
                           capture_output=True)
        mounted = r.returncode == 0
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        else:
            subprocess.run(["rm", "-rf", str(path)], check=False)  # deep: not shutil.rmtree


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``) mounted at ``path`` (created), unmounted and
    removed after; the test is skipped, saying why, where mounting is impossible."""
    import pytest

    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def du_by_path(top: Any) -> tuple[int, int]:
    """(st_blocks * 512 summed, entries) of a tree by plain paths, lstat only, the top
    included: du's reference (and, behind a path check, the naive baseline's du)."""
    size, n = os.lstat(top).st_blocks * 512, 1
    for dp, ds, fs in os.walk(top):
        for name in ds + fs:
            size += os.lstat(os.path.join(dp, name)).st_blocks * 512
            n += 1
    return size, n


def empty_files(directory: Any, n: int, name: str = "entry-{:05d}") -> None:
    """Make ``directory`` and ``n`` empty files in it, named ``name.format(i)`` (a wide
    directory for listing tests: one open by directory fd each, no path walked)."""
    os.mkdir(directory)
    fd = os.open(directory, os.O_PATH)
    try:
        for i in range(n):
            os.close(os.open(name.format(i), os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
