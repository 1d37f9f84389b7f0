"""Helpers of the peers' tables (tests/test_peers_go.py, tests/test_peers_libpathrs.py).

An outcome is written the way the tables write it: ``"ok"``, ``"escape"`` (``EscapeError``),
an errno name (``"ENOENT"``: any ``OSError`` with that errno that is not an escape), or an
exception class name for what is not an ``OSError`` (``"ValueError"``).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Callable

from beneathd.protocol import EscapeError


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, EscapeError):
        return "escape"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def attempt(fn: Callable[[], Any], *, tries: int = 20) -> tuple[str, Any, BaseException | None]:
    """(outcome, result, exception) of ``fn()``.

    ``EAGAIN`` (beneathd's "the tree kept changing under the call ... it may be retried")
    is retried: openat2 gives it for a lookup with ``..`` whenever anything on the machine
    was moved to another directory meanwhile (the kernel's global rename seqcount), so a
    rename storm elsewhere (another job's race tests) can exhaust the retry policy of a
    long lookup, such as a 40-link loop through ``..`` (measured: 17 of 5,000 under 43,000
    cross-directory renames a second in an unrelated tmpfs).  The call did nothing then."""
    for i in range(tries):
        try:
            return "ok", fn(), None
        except BlockingIOError as e:
            if i == tries - 1:
                return outcome_of(e), None, e
            time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - every failure is classified
            return outcome_of(e), None, e
    raise AssertionError("unreachable")  # pragma: no cover


def clear(d: Path) -> None:
    for name in os.listdir(d):
        p = d / name
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o700)
            shutil.rmtree(p)
        else:
            p.unlink()


def tree(d: Path) -> list[tuple[str, str, Any]]:
    """What is beneath ``d``: (relative path, kind, contents or link text), sorted; a file's
    contents, a link's text, a directory's permission bits."""
    out: list[tuple[str, str, Any]] = []
    for dp, dns, fns in os.walk(d):
        for name in dns + fns:
            p = os.path.join(dp, name)
            rel = os.path.relpath(p, d)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out.append((rel, "link", os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                out.append((rel, "dir", oct(stat.S_IMODE(st.st_mode))))
            elif stat.S_ISREG(st.st_mode):
                try:
                    data: Any = Path(p).read_bytes()
                except OSError:
                    data = "unreadable"
                out.append((rel, "file", data))
            else:
                out.append((rel, stat.filemode(st.st_mode)[0], None))
        dns[:] = [n for n in dns if not os.path.islink(os.path.join(dp, n))]
    return sorted(out)


KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link", stat.S_IFIFO: "fifo",
         stat.S_IFSOCK: "sock"}


def kind(st: os.stat_result) -> str:
    return KINDS.get(stat.S_IFMT(st.st_mode), "other")
