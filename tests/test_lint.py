"""The tree stays lint-clean and the product code type-checks (run by CI with the suite).

ruff with the rule set in pyproject.toml over everything Python; mypy over the installed
package's modules (daemon, client, protocol), laid out as the ``beneathd`` namespace that
pyproject maps them into. Skipped where the tool is not installed (it is in ``.[test]``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _have("ruff"), reason="ruff is not installed")
def test_ruff_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "daemon", "client", "protocol", "tests", "bench",
                        "cffi_build.py"], cwd=TOP, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.skipif(not _have("mypy"), reason="mypy is not installed")
def test_mypy_clean(tmp_path: Path) -> None:
    pkg = tmp_path / "beneathd"
    pkg.mkdir()
    os.symlink(TOP / "beneathd" / "__init__.py", pkg / "__init__.py")
    for sub in ("daemon", "client", "protocol"):
        os.symlink(TOP / sub, pkg / sub)
    r = subprocess.run([sys.executable, "-m", "mypy", "-p", "beneathd", "--ignore-missing-imports",
                        "--cache-dir", str(tmp_path / ".mypy_cache")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
