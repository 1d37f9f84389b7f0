"""The compiled core: it must be built, it must match the method table, and it fails closed."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from beneathd.protocol import METHODS, EscapeError
from beneathd.protocol.methods import API, ROOT_API


def test_native_extension_is_built() -> None:
    import beneathd._native as native

    assert native.lib.bn_openat2 is not None
    # the escape code is outside the errno range and kept apart from EXDEV
    assert native.lib.BN_EESCAPE > 4000


def test_escape_error_is_permission_error_with_exdev() -> None:
    import errno

    e = EscapeError("x")
    assert isinstance(e, PermissionError)
    assert e.errno == errno.EXDEV and e.filename == "x"
    assert "escapes the root" in str(e)
    from beneathd.client import EscapeError as E2

    assert E2 is EscapeError


@pytest.mark.parametrize("name", sorted(ROOT_API))  # (not the daemon's own: stats)
def test_root_signature_matches_table(name: str) -> None:
    from beneathd.daemon import Root

    method = METHODS[name]
    sig = inspect.signature(getattr(Root, name))
    params = list(sig.parameters.values())[1:]  # drop self
    if method.reports_progress or method.result == "watch":  # Root's own handle on a long call
        job = params.pop()
        assert job.name == "job" and job.kind == inspect.Parameter.KEYWORD_ONLY and job.default is None
    if method.result == "watch":  # the daemon's caps (not a client argument)
        budget = params.pop()
        assert budget.name == "budget" and budget.kind == inspect.Parameter.KEYWORD_ONLY
    assert [p.name for p in params] == [p.name for p in method.params]
    for got, want in zip(params, method.params):
        kind = inspect.Parameter.KEYWORD_ONLY if want.kwonly else inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert got.kind == kind, (name, got.name)
        if want.required:
            assert got.default is inspect.Parameter.empty, (name, got.name)
        else:
            assert got.default == want.default, (name, got.name)


def test_root_has_no_untabled_public_methods() -> None:
    from beneathd.daemon import Root

    public = {n for n, v in vars(Root).items() if callable(v) and not n.startswith("_")}
    assert public - set(API) <= {"close", "fileno", "attach_journal"}  # lifecycle, not operations


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_root_fails_closed_without_openat2(tmp_path: Path, err: str) -> None:
    """Under a seccomp filter that makes openat2 fail, Root() refuses and names the cause."""
    code = textwrap.dedent(
        f"""
        import errno, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from seccomp_util import deny_syscall, SYS_OPENAT2
        from beneathd.daemon import Root, OpenAt2Unavailable
        deny_syscall(SYS_OPENAT2, errno.{err})
        try:
            Root({str(tmp_path)!r})
        except OpenAt2Unavailable as e:
            print("REFUSED", e.errno == errno.{err}, e)
            sys.exit(3)
        print("STARTED")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "REFUSED True" in r.stdout
    assert "openat2" in r.stdout and ("ENOSYS" if err == "ENOSYS" else "seccomp") in r.stdout


def test_errors_never_name_the_root(tmp_path: Path) -> None:
    from beneathd.daemon import Root

    with Root(tmp_path) as fs:
        for call in (lambda: fs.stat("missing/x"), lambda: fs.read_file("nope"), lambda: fs.rmdir("zz")):
            with pytest.raises(OSError) as ei:
                call()
            assert str(tmp_path) not in str(ei.value)
            assert not os.path.isabs(str(ei.value.filename))
