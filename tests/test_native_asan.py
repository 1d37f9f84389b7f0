"""The tree walkers built with AddressSanitizer and UBSan, driven natively at depth.

tests/native/walk_asan.c runs cp -r and rm -r of a deep chain (wide levels, links in and
out) on a thread with a 256 KiB stack, then again under a low RLIMIT_NOFILE; any memory
error, leak, stack overflow or undefined behaviour fails it. Skipped where the compiler has
no sanitizer runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _util import tmpfs

REPO = Path(__file__).resolve().parent.parent
NATIVE = REPO / "native"
DRIVER = Path(__file__).resolve().parent / "native" / "walk_asan.c"
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
DEPTH = os.environ.get("BENEATHD_ASAN_DEEP", "30000")


def _cc() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _sanitizer_works(cc: str, tmp: Path) -> bool:
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = subprocess.run([cc, *SANITIZE, str(probe), "-o", str(tmp / "probe")], capture_output=True)
    return r.returncode == 0 and subprocess.run([str(tmp / "probe")]).returncode == 0


def test_walkers_under_asan(tmp_path: Path) -> None:
    cc = _cc()
    if cc is None or not _sanitizer_works(cc, tmp_path):
        pytest.skip("no C compiler with AddressSanitizer/UBSan here")
    exe = tmp_path / "walk_asan"
    sources = sorted(str(p) for p in NATIVE.glob("*.c"))
    build = subprocess.run(
        [cc, *SANITIZE, "-g", "-O1", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE}",
         *sources, str(DRIVER), "-o", str(exe), "-lpthread"],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1",
               UBSAN_OPTIONS="print_stacktrace=1")
    with tmpfs(tmp_path / "tree") as tree:
        r = subprocess.run([str(exe), str(tree), DEPTH], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "walk_asan: ok" in r.stdout, r.stdout + r.stderr[-4000:]
