"""The Node.js client's own suites (``node --test`` in ``node/test/``), run against real
daemons started by the tests themselves (``node/test/daemon.mjs``, with this interpreter),
so that the README's one test command covers the Node client too. The package must be
installed first: ``(cd node && npm ci)`` (``.ci/run`` does it; it builds the N-API addon
and compiles the TypeScript)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SUITES = sorted(p.name for p in (NODE_DIR / "test").glob("*.test.mjs"))


def test_node_package_is_built() -> None:
    assert shutil.which("node"), "node is not installed (Node 20: apt-get install nodejs npm libnode-dev)"
    for built in ("dist/index.js", "build/Release/seqpacket.node"):
        assert (NODE_DIR / built).exists(), f"node/{built} is missing: run (cd node && npm ci)"


@pytest.mark.parametrize("suite", SUITES)
def test_node_suite(suite: str, tmp_path: Path) -> None:
    if not (NODE_DIR / "dist" / "index.js").exists() or not shutil.which("node"):
        pytest.fail("the Node package is not built: run (cd node && npm ci)")
    env = dict(os.environ, BENEATHD_PYTHON=sys.executable, BENEATHD_TMP=str(tmp_path))
    r = subprocess.run(["node", "--test", "--test-reporter=tap", "--test-timeout=300000", f"test/{suite}"],
                       cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=900)
    summary = "\n".join(line for line in r.stdout.splitlines() if line.startswith("# ") and "Subtest" not in line)
    print(summary)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
