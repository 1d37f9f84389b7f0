"""``batch``'s shape, shared by ``Root`` and the clients (DESIGN.md "Batch").

A batch is a sequence of ``(method_name, *args)`` tuples, optionally ending with a dict of
keyword arguments; :func:`batch_calls` checks that shape once, the same way for every
backend, before anything runs or is sent.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Iterator

from .methods import API

__all__ = ["MAX_BATCH", "NOT_BATCHABLE", "batch_calls", "run_batch", "gc_paused", "BIG_PAYLOAD"]

#: messages at least this big are decoded with the cyclic GC paused
BIG_PAYLOAD = 64 * 1024


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a big batch's objects are made: 100,000 calls
    make ~10 containers each, none of them cyclic, and the collections their allocation
    sets off cost more than the calls (measured: 22 -> 7 us per batched stat on the daemon's
    side, 20 -> 3.5 us per call to encode). Left as it was found (another thread may have
    turned it off too: then it stays off)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

#: calls in one batch at most (a longer one: ValueError naming the limit)
MAX_BATCH = 131072
#: what cannot go in a batch: an fd or a stream would outlive its slot in the reply; the
#: daemon's counters are no call on the tree (and Root, which runs its own batches, has none)
NOT_BATCHABLE = frozenset({"open", "watch", "walk", "batch", "stats"})


def batch_calls(calls: Any) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """``calls`` as ``(name, args, kwargs)``; ``TypeError``/``ValueError`` for a bad shape,
    an unknown method, one that cannot be batched, or ``progress=``/``timeout=`` inside."""
    if isinstance(calls, (str, bytes)) or not hasattr(calls, "__iter__"):
        raise TypeError(f"batch() calls must be a sequence of tuples, not {type(calls).__name__}")
    calls = list(calls)
    if len(calls) > MAX_BATCH:
        raise ValueError(f"batch of {len(calls)} calls exceeds the limit of {MAX_BATCH}")
    out = []
    for i, c in enumerate(calls):
        if not isinstance(c, (tuple, list)) or not c or not isinstance(c[0], str):
            raise TypeError(f"batch() call {i} must be a tuple (method_name, *args[, kwargs]), not {c!r:.80}")
        name = c[0]
        if name in NOT_BATCHABLE:
            raise ValueError(f"batch() call {i}: {name} cannot be batched")
        if name not in API:
            raise ValueError(f"batch() call {i}: unknown method {name!r}")
        args = tuple(c[1:])
        kwargs: dict[str, Any] = {}
        if args and isinstance(args[-1], dict):
            kwargs = dict(args[-1])
            args = args[:-1]
        for k in ("progress", "timeout", "job"):
            if k in kwargs:
                raise ValueError(f"batch() call {i}: {k}= cannot be given inside a batch")
        out.append((name, args, kwargs))
    return out


def run_batch(target: Any, calls: Any, stop_on_error: bool) -> list[Any]:
    """An in-process batch: each call on ``target``'s own method, in order; what a call
    raises is returned in its slot; with ``stop_on_error`` the later slots are ``None``."""
    out: list[Any] = []
    failed = False
    for name, args, kwargs in batch_calls(calls):
        if failed:
            out.append(None)
            continue
        try:
            out.append(getattr(target, name)(*args, **kwargs))
        except Exception as e:  # returned in its slot, like the clients do
            out.append(e)
            failed = stop_on_error
    return out
