"""Socket fuzzing and hostile peers against the real daemon (``python -m beneathd.daemon``).

Each attack runs while a well-behaved client (``Prober``: write_file/stat/read_file/listdir
in a loop on its own connection) keeps calling; its calls must all succeed and its p99 is
recorded.  After each attack the daemon must be alive, its open fds (``/proc/PID/fd``) back
to the count it had with no client, and at the end its RSS growth bounded.

CI sizes are small; the long run (figures in docs/SECURITY.md ("Hostile peers, crashes and load")):

    BENEATHD_FUZZ_FRAMES=100000 BENEATHD_FUZZ_EXAMPLES=2000 \
        .venv/bin/pytest tests/test_fuzz.py -s -p no:cacheprovider

``BENEATHD_FUZZ_REPORT=PATH`` writes the figures as JSON.  The atheris target's seed
corpus (fuzz/corpus) is replayed through ``one_input`` here, without atheris.
"""

from __future__ import annotations

import array
import json
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "fuzz"))

import fuzz_frames  # noqa: E402
from bench.bench_load import DaemonProc, Prober  # noqa: E402

from beneathd.protocol import METHODS  # noqa: E402
from beneathd.protocol.codec import MAX_FRAME, FrameDecoder, Limits, ProtocolError, unpack  # noqa: E402

FRAMES = int(os.environ.get("BENEATHD_FUZZ_FRAMES", "3000"))
EXAMPLES = int(os.environ.get("BENEATHD_FUZZ_EXAMPLES", "150"))
REPORT = os.environ.get("BENEATHD_FUZZ_REPORT")
#: the well-behaved client's p99 under attack must stay below this (2 shared cores in CI)
P99_LIMIT_S = float(os.environ.get("BENEATHD_FUZZ_P99_LIMIT", "2.0"))
RSS_GROWTH_MIB = float(os.environ.get("BENEATHD_FUZZ_RSS_MIB", "64"))

MAX_CONN = 24
SEND_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0

FIGURES: dict[str, Any] = {"frames_sent": 0, "connections": 0, "crashes": 0, "attacks": {}}

CORPUS = REPO / "fuzz" / "corpus"

_ANC = socket.CMSG_SPACE(64 * 4)


# -- raw peers ------------------------------------------------------------------------------


def raw(path: str, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    s.connect(path)
    FIGURES["connections"] += 1
    return s


def send(s: socket.socket, frame: bytes, fds: list[int] | None = None) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    s.sendmsg([frame], anc)
    FIGURES["frames_sent"] += 1


def _close_fds(anc: list[tuple[int, int, bytes]]) -> None:
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            for fd in a:
                os.close(fd)


def read_reply(s: socket.socket) -> list[Any] | None:
    """One whole response (frames reassembled; fds received are closed); None on EOF.
    Intermediate messages of a streamed call (a generated walk request) are skipped, and
    each page's credit is given back so that the stream can end."""
    dec = FrameDecoder(Limits.for_responses())
    while True:
        try:
            data, anc, flags, _ = s.recvmsg(MAX_FRAME + 1, _ANC)
        except (ConnectionResetError, BrokenPipeError):
            return None
        _close_fds(anc)
        if not data:
            return None
        payload = dec.feed(data)
        if payload is not None:
            obj = unpack(payload, Limits.for_responses())
            assert isinstance(obj, list) and len(obj) == 4 and obj[0] in (1, 3), obj
            if obj[0] == 3:  # [3, msgid, kind, data]: more comes for this msgid
                if obj[2] == "walk":
                    s.send(b"\x00" + msgpack.packb([2, "more", [obj[1]]]))
                elif obj[2] == "watch":  # a watch runs until cancelled: its final reply then
                    s.send(b"\x00" + msgpack.packb([2, "cancel", [obj[1]]]))
                continue
            return obj


def drain(s: socket.socket) -> tuple[int, bool]:
    """Read whatever is queued without waiting; (datagrams read, EOF seen)."""
    n = 0
    old = s.gettimeout()
    s.settimeout(0)  # with a timeout set, Python polls before recvmsg even with MSG_DONTWAIT
    try:
        while True:
            try:
                data, anc, _, _ = s.recvmsg(MAX_FRAME + 1, _ANC)
            except (BlockingIOError, InterruptedError):
                return n, False
            except OSError:
                return n, True
            _close_fds(anc)
            if not data:
                return n, True
            n += 1
    finally:
        s.settimeout(old)


def req(msgid: Any, method: Any, params: Any) -> bytes:
    return b"\x00" + msgpack.packb([0, msgid, method, params], use_bin_type=True)


# -- the daemon under attack ----------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    d = DaemonProc("--max-connections", str(MAX_CONN), "--send-timeout", str(SEND_TIMEOUT),
                   "--idle-timeout", str(IDLE_TIMEOUT))
    with d:
        d.baseline_fds = d.settle()  # type: ignore[attr-defined]
        d.baseline_rss = d.rss_kib()  # type: ignore[attr-defined]
        yield d
        FIGURES["rss_start_mib"] = d.baseline_rss / 1024  # type: ignore[attr-defined]
        if d.alive():
            FIGURES["rss_end_mib"] = d.rss_kib() / 1024
        if REPORT:
            Path(REPORT).write_text(json.dumps(FIGURES, indent=2, default=str))
        print("\nfuzz figures:", json.dumps(FIGURES, default=str))


class Attack:
    """Context: a prober runs throughout; afterwards daemon alive, fds back, figures kept."""

    def __init__(self, d: DaemonProc, name: str) -> None:
        self.d = d
        self.name = name
        self.prober = Prober(d.socket, name=f"probe-{name}")
        self.rss_max = 0

    def __enter__(self) -> "Attack":
        assert self.d.alive()
        self.frames0 = FIGURES["frames_sent"]
        self.t0 = time.monotonic()
        self.prober.start()
        time.sleep(0.05)
        return self

    def sample(self) -> None:
        self.rss_max = max(self.rss_max, self.d.rss_kib())

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.prober.stop()
        if et is not None:
            return
        d = self.d
        if not d.alive():
            FIGURES["crashes"] += 1
        assert d.alive(), f"daemon died during {self.name}: {d.log()[-3000:]}"
        base = d.baseline_fds  # type: ignore[attr-defined]
        n = d.wait_fds(base, timeout=IDLE_TIMEOUT + SEND_TIMEOUT + 5)
        self.sample()
        s = self.prober.summary()
        FIGURES["attacks"][self.name] = {
            "frames": FIGURES["frames_sent"] - self.frames0,
            "seconds": round(time.monotonic() - self.t0, 2),
            "probe_calls": s["calls"], "probe_p50_ms": round(s["p50_ms"], 2),
            "probe_p99_ms": round(s["p99_ms"], 2), "probe_max_ms": round(s["max_ms"], 2),
            "probe_errors": len(self.prober.errors),
            "fds_after_minus_baseline": n - base,
            "rss_max_mib": round(self.rss_max / 1024, 1),
        }
        assert n == base, f"fd leak after {self.name}: {n} open, baseline {base}: {d.fds()}"
        assert not self.prober.errors, self.prober.errors[:5]
        assert s["calls"] > 0
        assert s["p99_ms"] / 1e3 < P99_LIMIT_S, FIGURES["attacks"][self.name]


# -- 1. hypothesis: generated envelopes and values --------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=16),
    st.sampled_from([b"a", b"b/c", b".", b"..", b"../x", b"/etc/passwd", b"a/../../b", b"f", b"", b"d/"]),
)
_values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                          st.dictionaries(st.text(max_size=8), kids, max_size=5)),
                       max_leaves=12)
_method_names = st.one_of(st.sampled_from(sorted(METHODS)), st.text(max_size=10))
_msgids = st.one_of(st.integers(min_value=0, max_value=2**32 - 1), st.integers(), _scalars)
_paths = st.sampled_from([b"a", b"b/c", b"d", b"f", b"x/y/z", b"..", b"../out", b"/abs", b"l", b"d/../f", "a", "caf\u00e9"])
_by_type = {
    "path": _paths, "text": _paths, "data": st.binary(max_size=300),
    "int": st.one_of(st.integers(min_value=0, max_value=0o7777), st.integers(min_value=-1, max_value=2**20)),
    "bool": st.booleans(), "str": st.sampled_from(["auto", "never", "always", "x"]),
    "optstr": st.one_of(st.none(), st.text(max_size=4)),
    "ns": st.one_of(st.none(), st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)).map(list)),
    "openmode": st.sampled_from(["r", "rb", "w", "wb", "a", "x", "r+", "rt", "bad"]),
}
# a batch's calls: valid ones, nested batches, wrong shapes and element types, many calls
_one_call = st.one_of(
    st.tuples(st.sampled_from(["stat", "lstat", "mkdir", "listdir", "exists", "unlink", "open", "watch", "batch",
                               "writer_publish", "nosuch"]),
              st.one_of(st.lists(_paths, max_size=3), _values)).map(list),
    st.tuples(st.just("batch"), st.just([[["stat", [b"a"]]], False])).map(list),
    _values,
)
_by_type["calls"] = st.one_of(st.lists(_one_call, max_size=8), _values,
                              st.integers(0, 3000).map(lambda n: [["exists", [b"a"]]] * n))


@st.composite
def _valid_requests(draw: Any) -> list[Any]:
    m = METHODS[draw(st.sampled_from(sorted(METHODS)))]
    wire = m.wire_params
    n = draw(st.integers(min_value=sum(p.required for p in wire), max_value=len(wire)))
    vals = [draw(_by_type[p.type]) for p in wire[:n]]
    if draw(st.booleans()):
        params: Any = vals
    else:
        params = {p.name: v for p, v in zip(wire, vals)}
    return [0, draw(st.integers(min_value=0, max_value=2**32 - 1)), m.name, params]


_envelopes = st.one_of(
    _valid_requests(), _valid_requests(),
    st.tuples(st.just(0), _msgids, _method_names, st.one_of(st.lists(_values, max_size=6),
                                                            st.dictionaries(st.text(max_size=10), _values, max_size=6),
                                                            _values)).map(list),
    st.lists(_values, max_size=6),
    _values,
)


def test_hypothesis_envelopes(tmp_path: Path) -> None:
    """Generated envelopes (valid and not) on one connection: every one gets a reply (the
    request's own msgid when it was readable) or a closed connection; the daemon lives."""
    with DaemonProc("--send-timeout", str(SEND_TIMEOUT)) as d:
        base = d.settle()
        state: dict[str, Any] = {"s": raw(d.socket, timeout=10)}
        stats = {"replies": 0, "errors": 0, "ok": 0, "closed": 0}

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(env=_envelopes, chunk=st.sampled_from([0, 0, 0, 7, 64]))
        def check(env: Any, chunk: int) -> None:
            try:
                payload = msgpack.packb(env, use_bin_type=True)
            except (ValueError, OverflowError, TypeError):
                return
            s = state["s"]
            frames = [b"\x00" + payload]
            if chunk:
                frames = [(b"\x01" if i + chunk < len(payload) else b"\x00") + payload[i:i + chunk]
                          for i in range(0, max(len(payload), 1), chunk)]
            try:
                for f in frames:
                    send(s, f)
                r = read_reply(s)
            except (BrokenPipeError, ConnectionResetError):
                r = None
            except socket.timeout:
                raise AssertionError(f"no reply within 10 s to {env!r}") from None
            assert d.alive(), d.log()[-3000:]
            if r is None:
                stats["closed"] += 1
                s.close()
                state["s"] = raw(d.socket, timeout=10)
                return
            stats["replies"] += 1
            _, rid, err, _res = r
            if err is None:
                stats["ok"] += 1
            else:
                stats["errors"] += 1
                assert isinstance(err, dict) and {"errno", "code", "message"} <= set(err), err
            if (isinstance(env, list) and len(env) == 4 and type(env[0]) is int and env[0] == 0
                    and type(env[1]) is int and 0 <= env[1] < 2**32):
                assert rid == env[1], (env, r)

        try:
            check()
        finally:
            state["s"].close()
        assert d.alive()
        n = d.wait_fds(base)
        assert n == base, (base, d.fds())
        FIGURES["attacks"]["hypothesis_envelopes"] = dict(stats, examples=EXAMPLES)


# -- 2. raw random datagrams ------------------------------------------------------------------


def _valid_frames(rng: random.Random) -> bytes:
    name = rng.choice(sorted(METHODS))
    return req(rng.randrange(2**32), name, [rng.choice([b"x", b"d/e", b"..", b"f"]) for _ in range(rng.randrange(4))])


def _mutate(rng: random.Random, b: bytes) -> bytes:
    b = bytearray(b)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    return bytes(b)


def random_datagram(rng: random.Random) -> bytes:
    k = rng.random()
    if k < 0.3:
        return bytes([rng.choice([0, 0, 1, 2, 255])]) + rng.randbytes(rng.randrange(64))
    if k < 0.7:
        return _mutate(rng, _valid_frames(rng))
    if k < 0.8:
        return rng.randbytes(rng.randrange(2048))
    if k < 0.9:
        return _valid_frames(rng)
    return b"\x00" + bytes([rng.choice([0xc4, 0xc5, 0xc6, 0xdc, 0xdd, 0xde, 0xdf, 0xd9, 0xda, 0xdb])]) + rng.randbytes(
        rng.randrange(8))


def test_raw_random_datagrams(daemon: DaemonProc) -> None:
    rng = random.Random(int(os.environ.get("BENEATHD_FUZZ_SEED", "1234")))
    closed = 0
    with Attack(daemon, "raw_random_datagrams") as a:
        conns = [raw(daemon.socket) for _ in range(4)]
        try:
            for i in range(FRAMES):
                j = i % len(conns)
                dg = random_datagram(rng)
                try:
                    send(conns[j], dg)
                except OSError:
                    eof = True
                else:
                    _, eof = drain(conns[j])
                if eof:
                    closed += 1
                    conns[j].close()
                    conns[j] = raw(daemon.socket)
                if i % 500 == 0:
                    a.sample()
                    assert daemon.alive()
        finally:
            for c in conns:
                c.close()
    FIGURES["attacks"]["raw_random_datagrams"]["connections_closed_by_daemon"] = closed


def test_corpus_through_daemon(daemon: DaemonProc) -> None:
    """The seed corpus as datagrams to the live daemon (datagram-mode files as their records)."""
    with Attack(daemon, "corpus_through_daemon"):
        for f in sorted(CORPUS.iterdir()):
            data = f.read_bytes()
            s = raw(daemon.socket)
            try:
                dgs = [b"\x00" + data[1:]] if data[0] % 2 == 0 else fuzz_frames._datagrams(data[1:])
                for dg in dgs:
                    if len(dg) > 200_000:
                        continue
                    try:
                        send(s, dg)
                    except OSError:
                        break
                    drain(s)
            finally:
                s.close()


# -- 3. oversized datagrams and huge claims -----------------------------------------------------


def _expect_error_then_eof(s: socket.socket, code: str) -> None:
    r = read_reply(s)
    assert r is not None and r[2] is not None and r[2]["code"] == code, r
    assert read_reply(s) is None  # then the daemon closes the connection


def test_oversized(daemon: DaemonProc) -> None:
    with Attack(daemon, "oversized"):
        # a datagram larger than max_frame but sendable with the default buffers
        s = raw(daemon.socket)
        send(s, b"\x00" + b"\xc0" * (MAX_FRAME + 100))
        _expect_error_then_eof(s, "EMSGSIZE")
        s.close()
        # a datagram far larger than anything the daemon reads (SO_SNDBUFFORCE as root)
        s = raw(daemon.socket)
        try:
            s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
            big = True
        except OSError:
            big = False
        if big:
            send(s, b"\x00" + b"\x00" * (2 << 20))
            _expect_error_then_eof(s, "EMSGSIZE")
        s.close()
        # a chunked message past max_message (64 MiB): MORE frames until refused
        s = raw(daemon.socket, timeout=20)
        chunk = b"\x01" + b"\x00" * (MAX_FRAME - 1)
        sent = 0
        try:
            while sent < (64 << 20) + 2 * MAX_FRAME:
                send(s, chunk)
                sent += len(chunk) - 1
        except OSError:
            pass
        r = read_reply(s)
        assert r is None or r[2]["code"] == "EMSGSIZE", r
        s.close()
        # huge claimed lengths inside one small frame: a clear error, connection kept
        s = raw(daemon.socket)
        for claim in (b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                      b"\xdb\xff\xff\xff\xff", b"\x91" * 100_000):
            send(s, b"\x00\x94\x00\x01\xa4stat\x91" + claim)
            r = read_reply(s)
            assert r is not None and r[2] is not None and r[2]["code"] in ("EPROTO", "EINVAL"), r
        send(s, req(7, "exists", [b"nothing"]))
        r = read_reply(s)
        assert r == [1, 7, None, False], r
        s.close()


# -- 4. fd spam -------------------------------------------------------------------------------


def test_fd_spam(daemon: DaemonProc) -> None:
    with Attack(daemon, "fd_spam"):
        nul = [os.open(os.devnull, os.O_RDONLY) for _ in range(64)]
        try:
            s = raw(daemon.socket)
            for i in range(200):
                n = (1, 16, 17, 64)[i % 4]
                frame = req(i, "exists", [b"no-such-entry"]) if i % 3 else b"\x00"  # with a request, or a bare frame
                if i % 5 == 0:
                    frame = b"\x00" + msgpack.packb([0, i, "exists", [b"no-such-entry"]])  # still a request
                try:
                    send(s, frame, nul[:n])
                except OSError:
                    s.close()
                    s = raw(daemon.socket)
                    continue
                _, eof = drain(s)
                if eof:
                    s.close()
                    s = raw(daemon.socket)
            # while our connection is still open the daemon holds none of our fds
            s2 = raw(daemon.socket)
            for _ in range(20):
                send(s2, req(1, "exists", [b"no-such-entry"]), nul[:16])
                assert read_reply(s2) == [1, 1, None, False]
            time.sleep(0.1)
            held = [n for n, t in daemon.fds().items() if t == os.devnull and n != "0"]  # 0: its stdin
            assert held == [], held
            s.close()
            s2.close()
        finally:
            for fd in nul:
                os.close(fd)


# -- 5. half-open and abandoned connections ---------------------------------------------------


def test_half_open_and_abandoned(daemon: DaemonProc) -> None:
    pw_root = daemon.root
    big = os.path.join(pw_root, "big-half-open")
    with open(big, "wb") as f:
        f.write(os.urandom(4 << 20))
    daemon.chown(big)
    with Attack(daemon, "half_open_abandoned") as a:
        socks = []
        for i in range(16):
            s = raw(daemon.socket)
            kind = i % 4
            if kind == 0:
                pass  # connects, says nothing (idle timeout closes it)
            elif kind == 1:
                send(s, b"\x01" + b"\x94\x00\x01")  # half a message, then silence
            elif kind == 2:
                send(s, req(i, "read_file", [b"big-half-open"]))
                s.shutdown(socket.SHUT_WR)  # half-closed, never reads
            else:
                for k in range(8):
                    send(s, req(k, "read_file", [b"big-half-open"]))
                s.close()  # abandoned mid-reply
                continue
            socks.append((kind, s))
        a.sample()
        # an idle connection is closed by the daemon after --idle-timeout
        idle = [s for k, s in socks if k == 0]
        t0 = time.monotonic()
        for s in idle:
            s.settimeout(IDLE_TIMEOUT + 5)
            assert s.recv(MAX_FRAME + 1) == b""
        waited = time.monotonic() - t0
        assert waited < IDLE_TIMEOUT + 5
        a.sample()
        for _, s in socks:
            s.close()
    os.unlink(big)


# -- 6. floods past the connection limit --------------------------------------------------------


def test_connection_flood(daemon: DaemonProc) -> None:
    with Attack(daemon, "connection_flood") as a:
        held = []
        refused = 0
        try:
            for _ in range(MAX_CONN * 4):
                try:
                    held.append(raw(daemon.socket, timeout=5))
                except OSError:
                    refused += 1  # backlog full: refused by the kernel
            time.sleep(0.3)
            a.sample()
            told = 0
            for s in held:
                s.settimeout(0)
                try:
                    data, anc, _, _ = s.recvmsg(MAX_FRAME + 1, _ANC)
                except OSError:
                    continue
                _close_fds(anc)
                if data:
                    obj = msgpack.unpackb(data[1:])
                    assert obj[2]["code"] == "EAGAIN", obj
                    told += 1
            assert told >= len(held) - MAX_CONN, (told, len(held))
            # the ones admitted still work
            ok = 0
            for s in held:
                s.settimeout(5)
                try:
                    send(s, req(5, "exists", [b"no-such-entry"]))
                    r = read_reply(s)
                except OSError:
                    continue
                if r == [1, 5, None, False]:
                    ok += 1
            assert ok >= 1
        finally:
            for s in held:
                s.close()
        FIGURES["attacks"].setdefault("connection_flood_detail", {}).update(
            {"opened": len(held), "told_eagain": told, "kernel_refused": refused, "admitted_worked": ok})
    # after the flood, a new client gets in
    from beneathd.client import Client

    with Client(daemon.socket) as c:
        assert c.exists("nothing") is False


# -- 7. peers that never read their replies ------------------------------------------------------


def _fresh_daemon() -> DaemonProc:
    d = DaemonProc("--max-connections", str(MAX_CONN), "--send-timeout", str(SEND_TIMEOUT),
                   "--idle-timeout", str(IDLE_TIMEOUT)).start()
    d.baseline_fds = d.settle()  # type: ignore[attr-defined]
    d.baseline_rss = d.rss_kib()  # type: ignore[attr-defined]
    return d


NEVER_READ_PEERS = 6
NEVER_READ_REQUESTS = 64
NEVER_READ_FILE = 1 << 20


def _never_read_attack(d: DaemonProc, name: str) -> Attack:
    path = os.path.join(d.root, "big-unread")
    with open(path, "wb") as f:
        f.write(os.urandom(NEVER_READ_FILE))
    d.chown(path)
    with Attack(d, name) as a:
        socks = [raw(d.socket) for _ in range(NEVER_READ_PEERS)]
        for s in socks:
            for k in range(NEVER_READ_REQUESTS):
                send(s, req(k, "read_file", [b"big-unread"]))
        t0 = time.monotonic()
        # the daemon drops each one after --send-timeout of not reading
        deadline = t0 + SEND_TIMEOUT * 4 + 10
        dropped = 0
        for s in socks:
            while time.monotonic() < deadline:
                a.sample()
                if _peer_gone(s.fileno()):
                    dropped += 1
                    break
                time.sleep(0.1)
        FIGURES["attacks"].setdefault(name + "_detail", {}).update(
            {"peers": len(socks), "requests_each": NEVER_READ_REQUESTS,
             "reply_mib_each": NEVER_READ_REQUESTS * NEVER_READ_FILE >> 20, "dropped": dropped,
             "seconds_to_drop_all": round(time.monotonic() - t0, 2),
             "rss_before_mib": round(d.baseline_rss / 1024, 1)})  # type: ignore[attr-defined]
        assert dropped == len(socks)
        for s in socks:
            s.close()
    return a


def test_never_reading_peers() -> None:
    """Peers that pipeline 64 read_file requests of 1 MiB and never read: each is dropped
    after --send-timeout, no fd leaks, the well-behaved client keeps working."""
    d = _fresh_daemon()
    try:
        _never_read_attack(d, "never_reading_peers")
    finally:
        d.close()


#: what the daemon may hold for NEVER_READ_PEERS peers that never read (the replies queued
#: for them are 6 x 64 x 1 MiB = 384 MiB if nothing bounds them per connection)
NEVER_READ_RSS_LIMIT_MIB = float(os.environ.get("BENEATHD_NEVER_READ_RSS_MIB", "128"))


def test_never_reading_peers_memory_bounded() -> None:
    """Replies built for a peer that never reads are bounded per connection (max_reply_bytes):
    the daemon stops building them, so its RSS stays bounded while such peers pile up."""
    d = _fresh_daemon()
    try:
        a = _never_read_attack(d, "never_reading_peers_memory")
        growth = (a.rss_max - d.baseline_rss) / 1024  # type: ignore[attr-defined]
        FIGURES["attacks"]["never_reading_peers_memory"]["rss_peak_growth_mib"] = round(growth, 1)
        print(f"\nnever-reading peers: daemon RSS peak growth {growth:.1f} MiB")
        assert growth < NEVER_READ_RSS_LIMIT_MIB, f"daemon RSS peaked {growth:.0f} MiB above its start"
    finally:
        d.close()


def _peer_gone(fd: int) -> bool:
    import select

    p = select.poll()
    p.register(fd, select.POLLRDHUP if hasattr(select, "POLLRDHUP") else select.POLLHUP)
    for _, ev in p.poll(0):
        if ev & (getattr(select, "POLLRDHUP", 0) | select.POLLHUP):
            return True
    return False


# -- 8. the end: memory bounded -------------------------------------------------------------------


def test_zz_rss_bounded_and_alive(daemon: DaemonProc) -> None:
    assert daemon.alive()
    time.sleep(0.5)
    growth = (daemon.rss_kib() - daemon.baseline_rss) / 1024  # type: ignore[attr-defined]
    FIGURES["rss_growth_mib"] = round(growth, 1)
    assert growth < RSS_GROWTH_MIB, f"daemon RSS grew by {growth:.1f} MiB over the attacks"
    from beneathd.client import Client

    with Client(daemon.socket) as c:
        c.write_file("last", b"ok")
        assert c.read_file("last") == b"ok"


# -- the atheris target's seed corpus, replayed without atheris ------------------------------


def test_corpus_replay_through_one_input() -> None:
    files = sorted(CORPUS.iterdir())
    assert len(files) >= 20
    for f in files:
        fuzz_frames.one_input(f.read_bytes())


def test_one_input_random_bytes() -> None:
    """A cheap stand-in for atheris in CI: random and mutated inputs through one_input."""
    rng = random.Random(99)
    seeds = [f.read_bytes() for f in sorted(CORPUS.iterdir())]
    n = int(os.environ.get("BENEATHD_FUZZ_FRAMES", "3000"))
    for i in range(n):
        data = _mutate(rng, rng.choice(seeds)) if i % 2 else rng.randbytes(rng.randrange(64))
        fuzz_frames.one_input(data)


def test_one_input_only_protocol_errors_escape_codec() -> None:
    """The invariant one_input relies on: the codec raises ProtocolError and nothing else."""
    from beneathd.protocol.codec import parse_request

    for bad in (None, 1, [0], [0, 1, "stat", [b"a", 1, 2, 3]], [0, 1, "stat", {"path": [1]}]):
        with pytest.raises(ProtocolError):
            parse_request(bad)
