"""What every startup step of the daemon shares: how it fails and how it speaks.

A step that cannot go on raises :class:`Fatal` with a one-line reason; ``cli.main`` prints
it (``beneathd: ...``) and exits 1. No traceback for a condition an operator can fix.
"""

from __future__ import annotations

import sys

PROG = "beneathd"


class Fatal(Exception):
    """A startup step failed; the message says why, in one line."""


def log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)
