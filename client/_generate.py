"""Write the code and docs that follow from the method table (protocol/methods.py).

    python -m beneathd.client._generate          # rewrite client/_generated.py, node/src/methods.ts and PROTOCOL.md's table
    python -m beneathd.client._generate --check  # exit 1 if any is out of date

``client/_generated.py`` holds every API method twice, as real ``def``s (``SyncMethods``
for ``Client``, ``AsyncMethods`` for ``AsyncClient``), plus one argument encoder per
method (``ENCODERS``, for ``Client.submit``): readable, greppable and type-checked, with
the per-parameter wire encoding inlined for speed. tests/test_generated.py fails when the
committed files differ from what this writes (as trio does with its ``_generated_*.py``).
Never imported at run time.

``node/src/methods.ts`` is the same table for the Node client (names, wire parameters with
their types and defaults, result kinds, what mutates, streams and reports progress), so
that the TypeScript code encodes calls from the one table too.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..protocol.methods import API, METHODS, REQUIRED, Method, Param

TOP = Path(__file__).resolve().parent.parent
GENERATED = TOP / "client" / "_generated.py"
PROTOCOL = TOP / "PROTOCOL.md"
NODE_METHODS = TOP / "node" / "src" / "methods.ts"
TABLE_BEGIN = "<!-- methods: written by python -m beneathd.client._generate; do not edit -->"
TABLE_END = "<!-- /methods -->"

#: wire type -> the annotation a caller sees
ARG_TYPES = {
    "path": "PathArg",
    "text": "PathArg",
    "data": "bytes | bytearray | memoryview",
    "int": "int",
    "bool": "bool",
    "str": "str",
    "optstr": "str | None",
    "ns": "tuple[int, int] | None",
    "openmode": "str",
    "progress": "Callable[[Progress], Any] | None",
    "calls": "Iterable[Any]",
}
#: result kind -> the annotation of what the method returns
RESULT_TYPES = {
    "none": "None",
    "bool": "bool",
    "stat": "os.stat_result",
    "names": "list[Any]",
    "entries": "list[DirEntry]",
    "path": "Any",
    "text": "Any",
    "bytes": "bytes",
    "fd": "IO[Any]",
    "usage": "tuple[int, int]",
    "walk": "Iterator[tuple[Any, list[Any], list[Any]]]",
    "watch": "Watch",
    "batch": "list[Any]",
    "stats": "dict[str, int]",
}


def _default(p: Param) -> str:
    if isinstance(p.default, int) and not isinstance(p.default, bool) and p.name in ("mode", "perms"):
        return oct(p.default)
    return repr(p.default)


def _signature(m: Method, with_self: bool, typed: bool, timeout: bool = False) -> str:
    out = ["self"] if with_self else []
    star = False
    for p in m.params:
        if p.kwonly and not star:
            out.append("*")
            star = True
        a = f"{p.name}: {ARG_TYPES[p.type]}" if typed else p.name
        out.append(a if p.required else (f"{a} = {_default(p)}" if typed else f"{a}={_default(p)}"))
    if timeout:  # every client method (DESIGN.md "Cancellation and deadlines"); not Root's
        if not star:
            out.append("*")
        out.append("timeout: float | None = None")
    return ", ".join(out)


def _encode(m: Method) -> tuple[list[str], str]:
    """Lines that encode each wire parameter into ``w<i>``, and the wire list expression."""
    lines: list[str] = []
    if m.name == "open":
        lines.append("_open_check(mode, encoding)")
    wire: list[str] = []
    for i, p in enumerate(p for p in m.params if p.wire):
        v, w, t = p.name, f"w{i}", p.type
        if t == "path":
            # the caller's value is kept (os.fspath'd) for error filenames and str/bytes results
            lines += [
                f"if {v}.__class__ is str:",
                f"    {w} = {v}.encode(_FSENC, _FSERR)  # type: ignore[union-attr]",
                f"    if '\\x00' in {v}:  # type: ignore[operator]",
                "        raise ValueError('embedded null byte')",
                f"elif {v}.__class__ is bytes:",
                f"    {w} = {v}",
                f"    if 0 in {v}:  # type: ignore[operator]  # (an int: b'\\x00' would make and drop a TypeError)",
                "        raise ValueError('embedded null byte')",
                "else:",
                f"    {v} = _fspath({v})",
                f"    {w} = _fs({v})",
            ]
        elif t == "text":
            lines.append(f"{w} = _fs({v})")
        elif t == "data":
            lines.append(f"{w} = {v} if {v}.__class__ is bytes else _data({m.name!r}, {v!r}, {v})")
        elif t == "ns":
            lines.append(f"{w} = None if {v} is None else _ns({m.name!r}, {v})")
        elif t == "int":
            lines.append(f"{w} = {v} if {v}.__class__ is int else _int({v})")
        elif t == "bool":
            lines.append(f"{w} = {v} if {v}.__class__ is bool else bool({v})")
        else:  # str, optstr, openmode: as given (the daemon validates)
            lines.append(f"{w} = {v}")
        wire.append(w)
    return lines, "[" + ", ".join(wire) + "]"


def _vals(m: Method) -> str:
    return "(" + "".join(f"{p.name}, " for p in m.params) + ")"


def _method(m: Method, is_async: bool) -> list[str]:
    """A client method. The blocking one inlines the encoding (its round trip is ~30 us, so
    a call saved counts); the async one calls the method's encoder (one call is noise next
    to trio's park/unpark) so that the encoding is written out twice, not three times."""
    if m.result == "batch":  # each call encoded and each slot decoded by the client's _batch
        return [f"    {'async def' if is_async else 'def'} {m.name}({_signature(m, True, True, timeout=True)})"
                f" -> {RESULT_TYPES[m.result]}:",
                f'        """{m.doc or m.name} (DESIGN.md "Batch")."""',
                f"        return {'await ' if is_async else ''}self._batch(calls, stop_on_error, timeout)"]
    if m.streams:  # a plain def returning an iterator (async: ``async for ... in fs.walk()``)
        ret = RESULT_TYPES[m.result].replace("Iterator", "AsyncIterator") if is_async else RESULT_TYPES[m.result]
        if m.result == "watch":
            ret = "AsyncWatch" if is_async else "Watch"
        args = ", ".join(f"{p.name}={p.name}" if p.kwonly else p.name for p in m.params)
        shell = "_watch" if m.result == "watch" else "_stream"
        return [f"    def {m.name}({_signature(m, True, True, timeout=True)}) -> {ret}:",
                f'        """{m.doc or m.name}."""',
                f"        return self._{shell.lstrip('_')}(_S_{m.name}, *_encode_{m.name}({args}), timeout)"]
    out = [f"    {'async def' if is_async else 'def'} {m.name}({_signature(m, True, True, timeout=True)})"
           f" -> {RESULT_TYPES[m.result]}:",
           f'        """{m.doc or m.name}."""']
    if is_async:
        args = ", ".join(f"{p.name}={p.name}" if p.kwonly else p.name for p in m.params)
        out.append(f"        return await self._call(_S_{m.name}, *_encode_{m.name}({args}), timeout)")
        return out
    lines, wire = _encode(m)
    out += ["        " + ln for ln in lines]
    out.append(f"        return self._call(_S_{m.name}, {_vals(m)}, {wire}, timeout)")
    return out


def render() -> str:
    """The text of client/_generated.py."""
    o: list[str] = [
        '"""The API methods of ``Client`` and ``AsyncClient``, one per entry of the method table.',
        "",
        "Written by ``python -m beneathd.client._generate`` from protocol/methods.py: do not edit;",
        "change the table (or the generator) and run it again (tests/test_generated.py checks).",
        "Each method encodes its arguments as the table's wire types say and hands the caller's",
        "values and the wire parameters to the client's ``_call``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import os",
        "from typing import IO, TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Iterator",
        "",
        "from ..protocol.types import DirEntry, Progress",
        "from ._common import _FSENC, _FSERR, SPECS, Spec, _data, _fs, _int, _ns, _open_check",
        "",
        "if TYPE_CHECKING:",
        "    from ._async import AsyncWatch",
        "    from ._sync import Watch",
        "",
        '__all__ = ["SyncMethods", "AsyncMethods", "ENCODERS", "PathArg"]',
        "",
        "#: what a path argument may be: ``str`` and ``bytes`` results echo its type",
        "PathArg = str | bytes | os.PathLike[Any]",
        "_fspath = os.fspath",
        "",
    ]
    o += [f"_S_{name} = SPECS[{name!r}]" for name in API]
    for cls, is_async, doc in (("SyncMethods", False, "``Client``'s methods (blocking)."),
                               ("AsyncMethods", True, "``AsyncClient``'s methods (awaited).")):
        o += ["", "", f"class {cls}:", f'    """{doc}"""', "", "    __slots__ = ()", ""]
        ret = "Any"
        o += ["    if TYPE_CHECKING:", f"        {'async ' if is_async else ''}def _call(self, spec: Spec, "
              f"vals: tuple[Any, ...], wire: list[Any], timeout: float | None = None) -> {ret}: ...",
              "        def _stream(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], "
              "timeout: float | None = None) -> Any: ...",
              "        def _watch(self, spec: Spec, vals: tuple[Any, ...], wire: list[Any], "
              "timeout: float | None = None) -> Any: ...",
              f"        {'async ' if is_async else ''}def _batch(self, calls: Iterable[Any], stop_on_error: bool, "
              "timeout: float | None) -> list[Any]: ..."]
        for m in API.values():
            o.append("")
            o += _method(m, is_async)
    o += ["", "", "# -- the argument handling alone, for Client.submit (pipelining) " + "-" * 30, ""]
    for m in API.values():
        if m.result == "batch":
            continue
        lines, wire = _encode(m)
        o.append("")
        o.append(f"def _encode_{m.name}({_signature(m, False, True)}) -> tuple[tuple[Any, ...], list[Any]]:")
        o += ["    " + ln for ln in lines]
        o.append(f"    return {_vals(m)}, {wire}")
    o += ["", "", "#: name -> encode(*args, **kwargs) -> (the caller's values, the wire params)",
          "ENCODERS: dict[str, Callable[..., tuple[tuple[Any, ...], list[Any]]]] = {"]
    o += [f"    {m.name!r}: _encode_{m.name}," for m in API.values() if m.result != "batch"]
    o += ["}", ""]
    return "\n".join(o)


def _long(m: Method) -> str:
    if isinstance(m.long, tuple):
        return f"{m.long[1]} > {m.long[2] // 1024} KiB"
    if isinstance(m.long, str):
        return m.long
    return "True" if m.long else ""


def render_table() -> str:
    """PROTOCOL.md's method table."""
    rows = ["| method | wire params (name:type=default) | result | mutates | long | progress, cancel |",
            "|---|---|---|---|---|---|"]
    for m in METHODS.values():
        params = ", ".join(p.name + ":" + p.type + ("" if p.required else f"={p.default!r}") for p in m.wire_params)
        rows.append(f"| `{m.name}` | {params} | {m.result} | {'yes' if m.mutates else 'no'} | {_long(m)} "
                    f"| {'yes' if m.reports_progress else ''} |")
    return "\n".join(rows)


def _ts(value: Any) -> str:
    return json.dumps(None if value is REQUIRED else value)


def render_ts() -> str:
    """node/src/methods.ts: the wire table for the Node client (internal methods included:
    the client publishes and discards atomic writers through them)."""
    out = ["// Written by `python -m beneathd.client._generate` from protocol/methods.py: do not edit.",
           "// tests/test_generated.py fails when this differs from what the generator writes.",
           "",
           "export interface WireParam {",
           "  readonly name: string;",
           "  readonly type: string;",
           "  readonly required: boolean;",
           "  readonly default: unknown;",
           "}",
           "",
           "export interface MethodSpec {",
           "  readonly name: string;",
           "  readonly params: readonly WireParam[];",
           "  readonly result: string;",
           "  readonly mutates: boolean;",
           "  /** takes the `progress` call option and stops when cancelled */",
           "  readonly progress: boolean;",
           "  /** its results come as intermediate pages (walk) */",
           "  readonly streams: boolean;",
           "}",
           "",
           "export const METHODS = {"]
    for m in METHODS.values():
        params = ", ".join(f"{{ name: {_ts(p.name)}, type: {_ts(p.type)}, required: {_ts(p.required)}, "
                           f"default: {_ts(p.default)} }}" for p in m.wire_params)
        out.append(f"  {m.name}: {{ name: {_ts(m.name)}, params: [{params}], result: {_ts(m.result)}, "
                   f"mutates: {_ts(m.mutates)}, progress: {_ts(m.reports_progress)}, streams: {_ts(m.streams)} }},")
    out += ["} as const satisfies Record<string, MethodSpec>;", "", "export type MethodName = keyof typeof METHODS;", "",
            "/** errno -> [code, the daemon's strerror text]: an error message equal to its errno's text is the",
            " * plain one (the client then says it as Node does); another is specific and is kept. */",
            "export const STRERROR: ReadonlyMap<number, readonly [string, string]> = new Map(["]
    for num in sorted(errno.errorcode):
        out.append(f"  [{num}, [{_ts(errno.errorcode[num])}, {_ts(os.strerror(num))}]],")
    out += ["]);", ""]
    return "\n".join(out)


def protocol_text(current: str) -> str:
    """PROTOCOL.md with its method table section written anew."""
    pat = re.compile(re.escape(TABLE_BEGIN) + r".*?" + re.escape(TABLE_END), re.S)
    if not pat.search(current):
        raise SystemExit(f"{PROTOCOL}: no {TABLE_BEGIN!r} ... {TABLE_END!r} section")
    return pat.sub(lambda _: f"{TABLE_BEGIN}\n{render_table()}\n{TABLE_END}", current)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0] if __doc__ else None)
    ap.add_argument("--check", action="store_true", help="only say whether the files are up to date")
    a = ap.parse_args(argv)
    want: dict[Path, str] = {GENERATED: render(), NODE_METHODS: render_ts(),
                             PROTOCOL: protocol_text(PROTOCOL.read_text())}
    stale = [p for p, text in want.items() if not p.exists() or p.read_text() != text]
    if a.check:
        for p in stale:
            print(f"out of date: {p.relative_to(TOP)} (run python -m beneathd.client._generate)", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(want[p])
        print(f"wrote {p.relative_to(TOP)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
