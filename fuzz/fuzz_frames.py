"""Atheris target: bytes -> the daemon's frame decoding, msgpack decoding and request validation.

    .venv/bin/pip install atheris        # only to fuzz; CI replays the corpus without it
    .venv/bin/python fuzz/fuzz_frames.py fuzz/corpus -runs=100000        # or -max_total_time=600
    BENEATHD_FUZZ_FRAMES=100000 .venv/bin/pytest tests/test_fuzz.py -k corpus   # no atheris

``one_input(data)`` does, per datagram, what ``daemon/server.py``'s reader does: the size
check against ``max_frame``, ``FrameDecoder.feed`` (with the daemon's ``Limits.for_requests``),
``unpack`` and ``parse_request``; for a request it also packs the reply the daemon would
send for a ``ProtocolError`` or runs the read-only-peer check and the ``is_long`` choice.
The only exception allowed out of the codec is :class:`ProtocolError`; anything else
(or a broken invariant, checked with ``_check``) escapes ``one_input`` and is a crash.

Input format (so that a byte string is both easy to mutate and able to express chunking):

* ``data[0]`` even: *payload mode*.  ``data[1:]`` is one msgpack message; it is split into
  frames with ``encode_frames`` at a frame size chosen by ``data[0]`` (so small inputs are
  chunked too) and fed through the decoder; the reassembled payload must equal the input.
* ``data[0]`` odd: *datagram mode*.  ``data[1:]`` is a sequence of records
  ``[u16 big-endian length][that many bytes]``, each one datagram as read from the socket
  (header byte included); a short last record takes what is left.  A fatal error starts a
  new connection (a fresh decoder), as the daemon closes the connection.
"""

from __future__ import annotations

import os
import struct
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

from beneathd.protocol.codec import (  # noqa: E402
    MAX_FRAME,
    FrameDecoder,
    Limits,
    ProtocolError,
    Request,
    encode_frames,
    pack_response,
    parse_request,
    unpack,
)
from beneathd.protocol.methods import METHODS  # noqa: E402
from beneathd.protocol.modes import is_write_mode  # noqa: E402

#: the daemon's limits (ServerConfig defaults)
LIMITS = Limits.for_requests()

#: frame sizes payload mode cycles through (the last is the daemon's)
_FRAME_SIZES = (2, 3, 8, 64, 1024, MAX_FRAME)


class InvariantError(AssertionError):
    pass


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise InvariantError(what)


def _after_request(req: Request) -> None:
    """What the daemon does with a parsed request short of calling Root."""
    _check(isinstance(req, Request), "parse_request returned a non-Request")
    _check(type(req.msgid) is int and 0 <= req.msgid < 2**32, "msgid out of range")
    m = req.method
    _check(METHODS.get(m.name) is m, "method not from the table")
    for p in m.wire_params:
        _check(p.name in req.args, f"missing arg {p.name}")
        v = req.args[p.name]
        if p.type in ("path", "text"):
            _check(isinstance(v, bytes) and b"\x00" not in v, f"bad path arg {p.name}")
        elif p.type == "data":
            _check(isinstance(v, bytes), "bad data arg")
        elif p.type == "bool":
            _check(type(v) is bool, "bad bool arg")
        elif p.type == "int":
            _check(type(v) is int, "bad int arg")
        elif p.type == "openmode":
            _check(isinstance(v, str), "bad open mode")
            is_write_mode(v)  # the read-only-peer check
    _check(set(req.args) == {p.name for p in m.wire_params}, "unexpected args")
    m.is_long(req.args)


def _reply_for(e: ProtocolError) -> None:
    _check(isinstance(e.message, str) and type(e.errno) is int, "ProtocolError without message/errno")
    _check(e.msgid is None or (type(e.msgid) is int and 0 <= e.msgid < 2**32), "ProtocolError msgid")
    out = pack_response(e.msgid, e.to_wire(), None)
    frames = encode_frames(out, MAX_FRAME)
    _check(all(len(f) <= MAX_FRAME for f in frames), "reply frame too big")


def _handle_payload(payload: bytes) -> None:
    try:
        req = parse_request(unpack(payload, LIMITS))
    except ProtocolError as e:
        _reply_for(e)
        return
    _after_request(req)


def _datagrams(body: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(body):
        if i + 2 > len(body):
            out.append(body[i:])
            break
        (n,) = struct.unpack_from(">H", body, i)
        i += 2
        out.append(body[i:i + n])
        i += n
    return out


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], bytes(data[1:])
    if mode % 2 == 0:
        size = _FRAME_SIZES[(mode // 2) % len(_FRAME_SIZES)]
        frames = encode_frames(body, size)
        _check(all(1 <= len(f) <= size for f in frames), "encode_frames made a bad frame")
        dec = FrameDecoder(LIMITS)
        got = None
        for i, f in enumerate(frames):
            try:
                got = dec.feed(f)
            except ProtocolError as e:
                _check(e.fatal, "a frame-level error must be fatal")
                _reply_for(e)
                return
            _check((got is not None) == (i == len(frames) - 1), "message completed at the wrong frame")
        _check(got == body, "reassembled payload differs")
        _handle_payload(body)
        return
    dec = FrameDecoder(LIMITS)
    for dg in _datagrams(body):
        if len(dg) > LIMITS.max_frame:  # the server's MSG_TRUNC / size check
            dec = FrameDecoder(LIMITS)
            continue
        try:
            payload = dec.feed(dg)
        except ProtocolError as e:
            _check(e.fatal, "a frame-level error must be fatal")
            _reply_for(e)
            dec = FrameDecoder(LIMITS)  # the daemon closes the connection
            continue
        if payload is None:
            _check(dec.pending, "MORE frame left nothing pending")
            continue
        _check(not dec.pending, "decoder still pending after a whole message")
        _handle_payload(payload)


def main(argv: list[str]) -> None:
    import atheris  # only here: CI never needs it

    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
