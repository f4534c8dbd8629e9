"""A Call with no config, for testing a stage's helpers alone."""

from __future__ import annotations

from types import SimpleNamespace

from extproc.pipeline.call import Call


def bare_call(kind: str | None = None, **fields) -> Call:
    """A call of endpoint `kind` (only its kind set), with `fields` set on it."""
    call = Call(None)
    if kind is not None:
        call.endpoint = SimpleNamespace(kind=kind)
    for name, value in fields.items():
        setattr(call, name, value)
    return call
