"""The code and docs written from the method table are up to date, and say what the table says."""

from __future__ import annotations

import inspect

import pytest

from beneathd.client import Client
from beneathd.client._generate import GENERATED, NODE_METHODS, PROTOCOL, protocol_text, render, render_ts
from beneathd.protocol.methods import API


def test_node_method_table_is_current() -> None:
    assert NODE_METHODS.read_text() == render_ts(), "run: python -m beneathd.client._generate"


def test_generated_client_module_is_current() -> None:
    assert GENERATED.read_text() == render(), "run: python -m beneathd.client._generate"


def test_protocol_method_table_is_current() -> None:
    text = PROTOCOL.read_text()
    assert text == protocol_text(text), "run: python -m beneathd.client._generate"


@pytest.mark.parametrize("name", sorted(API))
def test_client_methods_have_the_table_signature(name: str) -> None:
    from beneathd.client import AsyncClient

    for cls in (Client, AsyncClient):
        fn = getattr(cls, name)
        # a stream is a plain method returning an (async) iterator: ``async for ... in fs.walk()``
        assert inspect.iscoroutinefunction(fn) == (cls is AsyncClient and not API[name].streams)
        params = list(inspect.signature(fn).parameters.values())[1:]
        timeout = params.pop()  # every client method takes one (not Root: DESIGN.md)
        assert (timeout.name, timeout.kind, timeout.default) == ("timeout", inspect.Parameter.KEYWORD_ONLY, None)
        want = API[name].params
        assert [p.name for p in params] == [p.name for p in want]
        for got, p in zip(params, want):
            assert (got.kind is inspect.Parameter.KEYWORD_ONLY) == p.kwonly, (name, got.name)
            assert got.default == (inspect.Parameter.empty if p.required else p.default), (name, got.name)


def test_no_exec_at_import() -> None:
    import beneathd.client._async as a
    import beneathd.client._common as c
    import beneathd.client._sync as s

    for mod in (a, c, s):
        assert "exec(" not in inspect.getsource(mod), mod.__name__
