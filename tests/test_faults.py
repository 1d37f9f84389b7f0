"""Faults: ``kill -9`` the real daemon in the middle of ``write_file``, ``copy_file`` and ``cp -r``.

For each: the destination (every destination file, for ``cp -r``) holds the old content or
the new, never a mix and never a truncated file; once the daemon is back, no temporary name
(``.NAME.beneathd-XXXX``) is left visible (the restarted daemon undoes what its crash
journal, daemon/journal.py, recorded); the client sees a ``ConnectionError`` (not a hang, not a garbage result)
and, once the daemon is restarted, the same ``Client`` object carries on.

The kill lands mid-operation: the test watches ``/proc/PID/fd`` for the daemon's open
``O_TMPFILE`` (shown as ``... (deleted)``) or a named temporary, and sends SIGKILL then
(or, in some rounds, after a random delay).  Rounds per case: ``BENEATHD_FAULT_ROUNDS``
(CI: 2); sizes: ``BENEATHD_FAULT_MIB`` (CI: 48 MiB for write_file, whose data must fit one
64 MiB message; copy_file and cp -r use 2x that).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_load import DaemonProc  # noqa: E402

from beneathd.client import Client  # noqa: E402

ROUNDS = int(os.environ.get("BENEATHD_FAULT_ROUNDS", "2"))
MIB = int(os.environ.get("BENEATHD_FAULT_MIB", "48"))
SMALL_FILES = int(os.environ.get("BENEATHD_FAULT_SMALL_FILES", "1500"))

TEMP_MARK = ".beneathd-"

def _no_temps(top: str, what: str) -> None:
    left = _temps(top)
    assert left == [], f"{what}: temporaries left visible: {left[:5]}"


def _fill(path: str, byte: bytes, size: int) -> None:
    block = byte * (1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def _digest(byte: bytes, size: int) -> str:
    h = hashlib.sha256()
    block = byte * (1 << 20)
    left = size
    while left > 0:
        h.update(block[: min(left, len(block))])
        left -= len(block)
    return h.hexdigest()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _temps(top: str) -> list[str]:
    out = []
    for dp, dns, fns in os.walk(top):
        out += [os.path.join(dp, n) for n in dns + fns if TEMP_MARK in n]
    return out


def _busy(d: DaemonProc) -> bool:
    """The daemon has a temporary destination open (O_TMPFILE or a named temporary)."""
    try:
        targets = d.fds().values()
    except OSError:
        return False
    return any(t.endswith(" (deleted)") and d.root in t or TEMP_MARK in t for t in targets)


def _kill_during(d: DaemonProc, c: Client, call: Callable[[Client], Any], rng: random.Random,
                 mode: str, max_wait: float = 30.0) -> tuple[str, BaseException | None]:
    """Run ``call(c)`` in a thread and SIGKILL the daemon mid-way; (how it was killed, error)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call(c)
        except BaseException as e:  # noqa: BLE001
            box["exc"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t0 = time.monotonic()
    how = "finished-first"
    if mode == "tmpfile":
        while time.monotonic() - t0 < max_wait and t.is_alive():
            if _busy(d):
                time.sleep(rng.random() * 0.05)
                how = "tmpfile-open"
                break
            time.sleep(0.001)
    else:
        time.sleep(rng.random() * 0.08)
        how = "random-delay"
    if t.is_alive():
        d.kill9()
    else:
        how = "finished-first"
    t.join(30)
    assert not t.is_alive(), "the client call hangs after the daemon was killed"
    if how != "finished-first" and "result" in box:
        how = "replied-before-kill"  # the reply was out before SIGKILL landed: a real success
    return how, box.get("exc")


def _journal_figures(d: DaemonProc) -> tuple[str, int, str, int]:
    """How often a restart found a journal record: the temporary removed, or already gone
    (killed after the record, before the name appeared)."""
    lines = [ln for ln in d.log().splitlines() if "journal: " in ln]
    return ("| journal at restart: removed", sum(ln.endswith(": removed") for ln in lines),
            "gone", sum(ln.endswith(": gone") for ln in lines))


def _completed(how: str) -> bool:
    """The call returned success: the destination must then hold the new content."""
    return how in ("finished-first", "replied-before-kill")


def _after_kill(d: DaemonProc, c: Client, how: str, exc: BaseException | None) -> None:
    if not _completed(how):
        assert isinstance(exc, ConnectionError), f"{type(exc).__name__}: {exc}"
    d.restart()
    # the same Client carries on: an idempotent call, then a mutating one
    assert c.exists(".") is True
    c.write_file("after-restart", b"ok")
    assert c.read_file("after-restart") == b"ok"


@pytest.fixture
def daemon() -> Any:
    d = DaemonProc("--workers", "2")
    with d:
        yield d


def _modes() -> list[str]:
    return ["tmpfile" if i % 2 == 0 else "random" for i in range(ROUNDS)]


FIGURES: dict[str, list[str]] = {}


def _kill_rounds(d: DaemonProc, name: str, seed: int, timeout: float, prepare: Callable[[], None],
                 call: Callable[[Client], Any], check: Callable[[int, str], str]) -> None:
    """Rounds of: ``prepare()`` the old destination, run ``call`` and SIGKILL the daemon in
    it, ``check(round, how)`` the destination (returns a word for messages), restart (the
    journal is replayed), and no temporary may be left."""
    rng = random.Random(seed)
    hows = []
    with Client(d.socket, timeout=timeout) as c:
        for i, mode in enumerate(_modes()):
            prepare()
            how, exc = _kill_during(d, c, call, rng, mode)
            hows.append(how)
            said = check(i, how)
            _after_kill(d, c, how, exc)
            _no_temps(d.root, f"round {i} ({how}{said})")
    FIGURES[name] = hows
    print(f"{name} kills:", hows, *_journal_figures(d))


def _one_file_check(dst: str, size: int) -> Callable[[int, str], str]:
    old, new = _digest(b"O", size), _digest(b"N", size)

    def check(i: int, how: str) -> str:
        got = _file_digest(dst)
        assert got in (old, new), f"round {i} ({how}): destination is a mix"
        assert got == new or not _completed(how), f"round {i}: success, but old content"
        return ""

    return check


def test_kill9_during_write_file(daemon: DaemonProc) -> None:
    size = min(MIB, 60) << 20  # one message is at most 64 MiB
    dst = os.path.join(daemon.root, "big")
    data = b"N" * size

    def prepare() -> None:
        _fill(dst, b"O", size)
        daemon.chown(dst)

    _kill_rounds(daemon, "write_file", 1, 60, prepare, lambda cl: cl.write_file("big", data),
                 _one_file_check(dst, size))


def test_kill9_during_copy_file(daemon: DaemonProc) -> None:
    size = 2 * MIB << 20
    src = os.path.join(daemon.root, "src")
    dst = os.path.join(daemon.root, "dst")
    _fill(src, b"N", size)
    daemon.chown(src)

    def prepare() -> None:
        _fill(dst, b"O", size)
        daemon.chown(dst)
        os.sync()  # so the copy's own writeback, not ours, is what the kill interrupts

    _kill_rounds(daemon, "copy_file", 2, 60, prepare, lambda cl: cl.copy_file("src", "dst"),
                 _one_file_check(dst, size))


def _tree(top: str, byte: bytes, big: int, small: int) -> None:
    os.makedirs(os.path.join(top, "big"), exist_ok=True)
    for k in range(4):
        _fill(os.path.join(top, "big", f"b{k}"), byte, big)
    for k in range(small):
        sub = os.path.join(top, f"s{k % 10}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{k}"), "wb") as f:
            f.write(byte * (100 + k % 900))


def _check_tree(dst: str, big: int) -> int:
    """Every file under dst is wholly old or wholly new; returns how many are new."""
    new = 0
    for dp, _, fns in os.walk(dst):
        for n in fns:
            if TEMP_MARK in n:
                continue  # reported by _temps()
            p = os.path.join(dp, n)
            data = Path(p).read_bytes() if os.path.getsize(p) < (1 << 20) else None
            if data is None:
                dg = _file_digest(p)
                assert dg in (_digest(b"O", big), _digest(b"N", big)), f"{p}: a mix"
                new += dg == _digest(b"N", big)
            else:
                assert data and (set(data) == {ord("O")} or set(data) == {ord("N")}), f"{p}: a mix"
                k = int(n[1:])
                assert len(data) == 100 + k % 900, f"{p}: truncated"
                new += data[0] == ord("N")
    return new


def test_kill9_during_cp_r(daemon: DaemonProc) -> None:
    big = (2 * MIB << 20) // 4
    src = os.path.join(daemon.root, "tree-src")
    dst = os.path.join(daemon.root, "tree-dst")
    _tree(src, b"N", big, SMALL_FILES)
    daemon.chown_tree(src)

    def prepare() -> None:
        _tree(dst, b"O", big, SMALL_FILES)
        daemon.chown_tree(dst)

    def check(i: int, how: str) -> str:
        n_new = _check_tree(dst, big)
        assert n_new == 4 + SMALL_FILES or not _completed(how), f"round {i}: success, {n_new} new"
        return f", {n_new} files already new"

    _kill_rounds(daemon, "cp -r", 3, 120, prepare,
                 lambda cl: cl.cp("tree-src", "tree-dst", recursive=True, overwrite=True), check)


# -- the window between linking the temporary name and renaming it over the destination ------

_KILL_CHILD = r'''
import ctypes, os, platform, sys
sys.path.insert(0, sys.argv[3])
from seccomp_util import _SockFilter, _SockFprog
from beneathd._native import ffi, lib
from beneathd.daemon import Root

# renameat / renameat2 (x86_64), renameat2 (aarch64: no renameat)
NRS = {"x86_64": (264, 316), "aarch64": (276,)}[platform.machine()]

def kill_on_rename():
    ins = [_SockFilter(0x20, 0, 0, 0)]                      # A = seccomp_data.nr
    for nr in NRS:
        ins += [_SockFilter(0x15, 0, 1, nr),                 # if A == nr
                _SockFilter(0x06, 0, 0, 0x80000000)]         #   SECCOMP_RET_KILL_PROCESS
    ins.append(_SockFilter(0x06, 0, 0, 0x7FFF0000))          # else allow
    prog = (_SockFilter * len(ins))(*ins)
    fprog = _SockFprog(len(ins), prog)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0

@ffi.def_extern()
def bn_py_hook(stage):
    if stage == 3:          # the new content is complete; next: link it in, rename it over
        kill_on_rename()

root = Root(sys.argv[1], journal=sys.argv[2] or None)
op, args = sys.argv[4], sys.argv[5:]
lib.bn_set_hook(1)
if op == "write_file":
    root.write_file(args[0], args[1].encode())
elif op in ("cp_r_symlink", "cp_r_fifo"):  # a link or FIFO replaced inside cp -r: made at a temporary name, renamed
    kill_on_rename()
    root.cp(args[0], args[1], recursive=True)
else:
    getattr(root, op)(*args)
print("SURVIVED")
'''

_KILL_ARGS = {"write_file": ["dst", "new content\n"], "copy_file": ["src", "dst"], "cp": ["src", "dst"],
              "cp_r_symlink": ["tree-src", "tree-dst"], "cp_r_fifo": ["fifo-src", "fifo-dst"]}


def _kill_at_rename(root: Path, journal: Path | None, op: str) -> None:
    """Run ``op`` on a Root in a child that seccomp kills at its first rename (after the
    temporary name was linked): the window a SIGKILL can hit."""
    import subprocess

    (root / "dst").write_bytes(b"old content\n")
    (root / "src").write_bytes(b"new content\n")
    (root / "tree-src").mkdir()
    (root / "tree-src" / "ln").symlink_to("new-target")
    (root / "tree-dst").mkdir()
    (root / "tree-dst" / "ln").write_bytes(b"old")
    (root / "fifo-src").mkdir()
    os.mkfifo(root / "fifo-src" / "p")
    (root / "fifo-dst").mkdir()
    (root / "fifo-dst" / "p").write_bytes(b"old")
    r = subprocess.run([sys.executable, "-c", _KILL_CHILD, str(root), str(journal or ""),
                        str(Path(__file__).parent), op, *_KILL_ARGS[op]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == -31, (r.returncode, r.stdout, r.stderr)  # SIGSYS: killed at the rename
    assert (root / "dst").read_bytes() in (b"old content\n", b"new content\n")
    assert (root / "tree-dst" / "ln").is_file()  # untouched: the rename never ran
    assert (root / "fifo-dst" / "p").is_file()


def _pending(journal: Path) -> list[bytes]:
    """The records in a journal directory nobody holds."""
    from beneathd.daemon.journal import Journal

    j = Journal(journal)
    try:
        return j.pending()
    finally:
        j.close()


def _plant(journal: Path, *paths: str | Path) -> None:
    """Records as a killed daemon would have left them (one slot each)."""
    from beneathd.daemon.journal import SIZE, SLOT, record

    with open(journal / "journal", "r+b" if (journal / "journal").exists() else "w+b") as f:
        f.truncate(SIZE)
        for i, p in enumerate(paths):
            f.seek(3 * SLOT + i * SLOT)  # anywhere: every slot is read
            f.write(record(os.fsencode(p)))


@pytest.mark.parametrize("op", list(_KILL_ARGS))
def test_killed_between_link_and_rename_leaves_no_temporary(tmp_path: Path, op: str) -> None:
    """The journal records the temporary; the next Root taking it removes it."""
    from beneathd.daemon import Root

    root, journal = tmp_path / "r", tmp_path / "journal"
    root.mkdir()
    journal.mkdir(mode=0o700)
    _kill_at_rename(root, journal, op)
    left = _temps(str(root))
    assert len(left) == 1, left  # the window is real: the killed process left its temporary
    assert _pending(journal) == [os.fsencode(left[0])]  # ... and the record naming it
    with Root(root, journal=journal) as r:
        rel = os.path.relpath(left[0], root).encode()
        assert r.recovered == [(rel, "removed")]
        assert r.journal is not None and r.journal.pending() == []
    assert _temps(str(root)) == []
    assert _pending(journal) == []


def test_without_a_journal_the_temporary_stays(tmp_path: Path) -> None:
    """Why the journal exists: the same kill with none leaves the name behind."""
    root = tmp_path / "r"
    root.mkdir()
    _kill_at_rename(root, None, "write_file")
    assert len(_temps(str(root))) == 1


def test_journal_replay_stays_beneath_the_root(tmp_path: Path) -> None:
    """Records are data: one pointing outside the root (directly or through an in-tree
    link), or at a name that is not a temporary, removes nothing; a second holder of the
    journal is refused."""
    from beneathd.daemon import Root
    from beneathd.daemon.journal import JournalBusy

    root, journal, outside = tmp_path / "r", tmp_path / "journal", tmp_path / "outside"
    for d in (root, journal, outside):
        d.mkdir()
    victim = outside / ".x.beneathd-00000000000000aa"
    victim.write_bytes(b"keep")
    (root / "sub").mkdir()
    os.symlink(str(outside), root / "sub" / "out")
    mine = root / "precious"
    mine.write_bytes(b"keep too")
    _plant(journal, victim, root / "sub" / "out" / victim.name, mine, root / ".." / "outside" / victim.name)
    with Root(root, journal=journal) as r:
        outcomes = dict(r.recovered)
        assert len(outcomes) == 4 and all(o.startswith("skipped") for o in outcomes.values()), outcomes
        with pytest.raises(JournalBusy):
            Root(root, journal=journal)
    assert victim.read_bytes() == b"keep" and mine.read_bytes() == b"keep too"
    assert _pending(journal) == []


def test_many_threads_share_the_journal_slots(tmp_path: Path) -> None:
    """More concurrent replaces than slots: each waits for a slot, none is lost or mixed."""
    import concurrent.futures

    from beneathd.daemon import Root
    from beneathd.daemon.journal import SLOTS

    root, journal = tmp_path / "r", tmp_path / "journal"
    root.mkdir()
    journal.mkdir()
    with Root(root, journal=journal) as r, concurrent.futures.ThreadPoolExecutor(32) as ex:
        names = [f"f{i}" for i in range(2 * SLOTS)]
        for n in names:
            r.write_file(n, b"old")
        list(ex.map(lambda n: r.write_file(n, n.encode() * 100), names * 3))
        assert all(r.read_file(n) == n.encode() * 100 for n in names)
        assert r.journal is not None and r.journal.pending() == []
    assert sorted(os.listdir(root)) == sorted(names)


def test_daemon_replays_its_journal_at_start() -> None:
    """Through the CLI: what a killed predecessor recorded in ``--state-dir`` is removed
    (and logged) before the first client is served; a live second daemon on the same
    journal is refused; a clean stop leaves the directory empty."""
    d = DaemonProc()
    state = Path(d.base) / "state"  # (tmp_path is not searchable by the daemon's user)
    state.mkdir(mode=0o700)
    d.extra += ["--state-dir", str(state)]
    try:
        sub = Path(d.root) / "sub"
        sub.mkdir()
        d.chown(str(sub))
        temp = sub / ".data.beneathd-0123456789abcdef"
        temp.write_bytes(b"half-published")
        d.chown(str(temp))
        _plant(state, temp)
        d.chown_tree(str(state))
        d.start()
        assert not temp.exists()
        assert "journal: 'sub/.data.beneathd-0123456789abcdef'" in d.log() and "removed" in d.log()
        with Client(d.socket) as c:
            c.write_file("sub/data", b"1")
            c.write_file("sub/data", b"2")  # a replace: journaled, then the record is cleared
            assert c.listdir("sub") == ["data"]
        other = DaemonProc("--state-dir", str(state), base=d.base)
        other.socket = os.path.join(d.base, "sock2")
        with pytest.raises(RuntimeError, match="held by another beneathd"):
            other.start(timeout=10)
        assert d.stop() == 0
        assert os.listdir(state) == []
    finally:
        d.close()
