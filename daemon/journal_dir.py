"""The crash journal's directory: which one, made how, and what to do when it is unusable.

``--state-dir``, else ``$STATE_DIRECTORY`` (the unit's ``StateDirectory=``): named by the
operator, so it must work (fatal otherwise). Else a default one, ``/run/beneathd/journal/
DEV-INO`` of the root when started as root or ``$XDG_RUNTIME_DIR/beneathd/journal/DEV-INO``:
a default that cannot be had is a warning, and the daemon runs without a journal.
"""

from __future__ import annotations

import argparse
import os
import stat
from typing import Any

from .startup import Fatal, log

__all__ = ["journal_dir", "take_journal"]


def journal_dir(args: argparse.Namespace, root_fd: int,
                 target: tuple[int, int] | None) -> tuple[str | None, bool]:
    """(the journal directory to take after the privilege drop, whether the operator named
    it).  A default one is made (0700, owned by the target user) if missing; None with a
    logged warning when there is none to be had.  A named one that cannot be used is fatal."""
    if args.no_journal:
        return None, False
    explicit = args.state_dir or (os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None)
    if explicit:
        path = os.path.abspath(explicit)
    else:
        st = os.fstat(root_fd)
        key = f"{st.st_dev}-{st.st_ino}"
        if os.geteuid() == 0:
            base = "/run/beneathd/journal"
        elif os.environ.get("XDG_RUNTIME_DIR"):
            base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "beneathd", "journal")
        else:
            log("warning: no --state-dir (and no $STATE_DIRECTORY or $XDG_RUNTIME_DIR): no crash "
                 "journal; a kill while replacing a file may leave its temporary name")
            return None, False
        path = os.path.join(base, key)
    try:
        if not explicit:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
            made = True
        except FileExistsError:
            made = False
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{path}: not a directory")
        if os.geteuid() == 0 and target is not None and (made or not explicit):
            os.chown(path, *target)
            os.chmod(path, 0o700)
    except OSError as e:
        _journal_unusable(path, bool(explicit), f"cannot make it: {e.strerror or e}")
        return None, False
    return path, bool(explicit)


def _journal_unusable(path: str, explicit: bool, why: str) -> None:
    """A journal directory the operator named must work (fatal); a default one may not
    (a warning, and the daemon runs without)."""
    if explicit:
        raise Fatal(f"state dir {path}: {why}")
    log(f"warning: crash journal {path}: {why}; running without")


def take_journal(root: Any, path: str, explicit: bool) -> None:
    """After the drop: lock the journal, undo and log what a killed predecessor left."""
    from .journal import JournalBusy

    try:
        done = root.attach_journal(path)
    except JournalBusy:
        _journal_unusable(path, explicit, "held by another beneathd (one daemon per journal)")
        return
    except OSError as e:
        _journal_unusable(path, explicit, f"cannot take it: {e.strerror or e}")
        return
    for rel, outcome in done:
        log(f"journal: {os.fsdecode(rel)!r} (a temporary left by a killed daemon): {outcome}")
