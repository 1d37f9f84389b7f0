"""The sans-I/O codec: frames, messages, validation, stat/DirEntry wire forms."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import msgpack
import pytest

from beneathd.protocol import EscapeError
from beneathd.protocol.codec import (
    MAX_FRAME,
    FrameDecoder,
    Limits,
    ProtocolError,
    decode_result,
    encode_frames,
    encode_params,
    encode_result,
    error_reply,
    exception_from_reply,
    pack_request,
    pack_response,
    parse_request,
    parse_response,
    unpack,
)
from beneathd.protocol.batch import MAX_BATCH
from beneathd.protocol.methods import METHODS
from beneathd.protocol.types import DirEntry, stat_from_list, stat_to_list

REQ = Limits.for_requests()
RESP = Limits.for_responses()


def roundtrip(payload: bytes, limits: Limits = REQ) -> bytes:
    dec = FrameDecoder(limits)
    out = None
    frames = encode_frames(payload)
    for i, f in enumerate(frames):
        assert len(f) <= MAX_FRAME
        out = dec.feed(f)
        assert (out is None) == (i < len(frames) - 1)
    assert out is not None
    return out


def test_small_message_is_one_frame() -> None:
    p = pack_request(1, "stat", [b"a", True])
    frames = encode_frames(p)
    assert frames == [b"\x00" + p]
    assert roundtrip(p) == p


@pytest.mark.parametrize("size", [MAX_FRAME - 1, MAX_FRAME, 3 * MAX_FRAME + 17, 5_000_000])
def test_chunking_roundtrip(size: int) -> None:
    p = os.urandom(size)
    assert roundtrip(p) == p


def test_message_cap() -> None:
    dec = FrameDecoder(Limits(max_message=1000))
    with pytest.raises(ProtocolError) as ei:
        for f in encode_frames(b"x" * 5000, 300):
            dec.feed(f)
    assert ei.value.fatal and ei.value.errno == errno.EMSGSIZE


def test_bad_frames() -> None:
    dec = FrameDecoder(REQ)
    for bad in (b"", b"\x07abc", b"\x00" + b"x" * MAX_FRAME):
        with pytest.raises(ProtocolError):
            dec.feed(bad)


def test_request_roundtrip_all_methods() -> None:
    for m in METHODS.values():
        values = {}
        for p in m.params:
            values[p.name] = {
                "path": "dir/é", "text": "t", "data": b"d", "int": 5, "bool": True, "str": "auto",
                "optstr": None, "ns": (1, 2), "openmode": "rb", "calls": [["stat", [b"a"]]],
            }[p.type] if p.required else p.default
        wire = encode_params(m, values)
        req = parse_request(unpack(pack_request(7, m.name, wire), REQ))
        assert req.msgid == 7 and req.method is m
        assert set(req.args) == {p.name for p in m.wire_params}


def test_params_as_map_and_defaults() -> None:
    req = parse_request([0, 1, "mkdir", {"path": b"x", "parents": True}])
    assert req.args == {"path": b"x", "mode": 0o777, "parents": True, "exist_ok": False}
    req = parse_request([0, 1, "listdir", []])
    assert req.args == {"path": b"."}
    req = parse_request([0, 1, "stat", ["str-path-ok"]])
    assert req.args["path"] == b"str-path-ok"


@pytest.mark.parametrize(
    "msg, err",
    [
        ([0, 1, "nosuch", []], errno.ENOSYS),
        ([0, 1, "stat", []], errno.EINVAL),
        ([0, 1, "stat", [1]], errno.EINVAL),
        ([0, 1, "stat", [b"a", 1]], errno.EINVAL),  # int is not bool
        ([0, 1, "stat", [b"a", True, 3]], errno.EINVAL),
        ([0, 1, "stat", {"path": b"a", "bogus": 1}], errno.EINVAL),
        ([0, 1, "chmod", [b"a", True]], errno.EINVAL),  # bool is not int
        ([0, 1, "utime", [b"a", [1]]], errno.EINVAL),
        ([0, 1, "open", [b"a", "rw"]], errno.EINVAL),
        ([0, 1, "stat", [b"a\x00b"]], errno.EINVAL),
        ([0, 1, "write_file", [b"a", "text-not-bin"]], errno.EINVAL),
        ([0, 1, "stat", 5], errno.EINVAL),
        ([0, 1, 5, []], errno.EINVAL),
    ],
)
def test_validation_errors(msg: list, err: int) -> None:
    with pytest.raises(ProtocolError) as ei:
        parse_request(msg)
    assert ei.value.errno == err
    assert ei.value.msgid == 1
    assert not ei.value.fatal


@pytest.mark.parametrize("msg", [5, [], [1, 1, "stat", []], [0, -1, "stat", []], [0, "x", "stat", []],
                                 [0, 2**40, "stat", []], [0, 1, "stat"], {"a": 1}])
def test_envelope_errors(msg: object) -> None:
    with pytest.raises(ProtocolError) as ei:
        parse_request(msg)
    assert ei.value.msgid is None


def test_unpack_limits() -> None:
    with pytest.raises(ProtocolError):
        unpack(b"\x91" * 100_000 + b"\x00", REQ)  # deep nesting
    with pytest.raises(ProtocolError):
        unpack(msgpack.packb(list(range(MAX_BATCH + 1))), REQ)  # array too long for a request (a batch at most)
    with pytest.raises(ProtocolError):
        unpack(msgpack.packb(msgpack.ExtType(5, b"x")), REQ)
    with pytest.raises(ProtocolError):
        unpack(msgpack.packb(1) + b"\x00", REQ)  # trailing bytes
    with pytest.raises(ProtocolError):
        unpack(b"\xdd\xff\xff\xff\xff", REQ)  # claims 4G elements
    with pytest.raises(ProtocolError):
        unpack(b"\xc6\x7f\xff\xff\xff", REQ)  # claims 2G bytes
    with pytest.raises(ProtocolError):
        unpack(b"\xc1", REQ)  # never-used byte
    with pytest.raises(ProtocolError):
        unpack(b"\xa2\xff\xfe", REQ)  # invalid utf-8 str
    assert unpack(msgpack.packb([b"x"] * 100_000), RESP) == [b"x"] * 100_000


def test_stat_roundtrip(tmp_path) -> None:
    st = os.lstat(tmp_path)
    st2 = stat_from_list(stat_to_list(st))
    assert isinstance(st2, os.stat_result)
    for f in ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
              "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev",
              "st_atime", "st_mtime", "st_ctime"):
        assert getattr(st2, f) == getattr(st, f), f
    assert tuple(st2) == tuple(st)
    assert stat.S_ISDIR(st2.st_mode)


def test_results_echo_type() -> None:
    m = METHODS["listdir"]
    wire = msgpack.unpackb(msgpack.packb(encode_result(m, [b"a", b"\xff"])), raw=False)
    assert decode_result(m, wire, "d") == ["a", os.fsdecode(b"\xff")]
    assert decode_result(m, wire, b"d") == [b"a", b"\xff"]
    m = METHODS["scandir"]
    e = DirEntry(b"n", b"./n", "symlink", "dir", stat_to_list(os.lstat(".")))
    wire = msgpack.unpackb(msgpack.packb(encode_result(m, [e])), raw=False)
    [e2] = decode_result(m, wire, "sub")
    assert e2.name == "n" and e2.path == os.path.join("sub", "n")
    assert e2.is_symlink() and e2.is_dir() and not e2.is_dir(follow_symlinks=False)
    assert e2.inode() == os.lstat(".").st_ino


def test_error_mapping_uses_callers_paths() -> None:
    m = METHODS["rename"]
    args = {"src": b"a", "dst": b"b", "noreplace": True}
    err = error_reply(FileExistsError(errno.EEXIST, "File exists", b"a", None, b"b"), m, args)
    err = msgpack.unpackb(msgpack.packb(err), raw=False)
    exc = exception_from_reply(err, m, {"src": "a", "dst": "b", "noreplace": True})
    assert type(exc) is FileExistsError and exc.filename == "a" and exc.filename2 == "b"
    err = error_reply(FileNotFoundError(errno.ENOENT, "x", b"b"), m, args)
    exc = exception_from_reply(err, m, {"src": "a", "dst": "b"})
    assert exc.filename == "b" and exc.filename2 is None
    m = METHODS["stat"]
    exc = exception_from_reply(error_reply(EscapeError(b"../x"), m, {"path": b"../x"}), m, {"path": "../x"})
    assert isinstance(exc, EscapeError) and exc.errno == errno.EXDEV and exc.filename == "../x"
    exc = exception_from_reply(error_reply(ValueError("bad"), m, {"path": b"x"}), m, {"path": "x"})
    assert type(exc) is ValueError


def test_response_parse() -> None:
    r = parse_response(unpack(pack_response(3, None, [1, 2]), RESP))
    assert (r.msgid, r.error, r.result) == (3, None, [1, 2])
    with pytest.raises(ProtocolError):
        parse_response([0, 1, None, None])


def test_protocol_imports_no_trio() -> None:
    code = "import sys, beneathd.protocol.codec; assert 'trio' not in sys.modules and 'socket' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
