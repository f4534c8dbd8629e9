"""What the translation tables share: the recorded cassettes, SSE split as the gateway hands it
to a stream translation, and `contains`, the fragment match every table row is checked with."""
from __future__ import annotations

from typing import Any

import orjson
import yaml

from extproc.api.sse import SSEParser
from gateway_stack import FIXTURES

ABSENT = object()                 # in an expected fragment: the key must not be there


def cassette(name: str) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all((FIXTURES / name).read_text()) if doc]
    return docs[0]["interactions"]


def sse_events(body: bytes) -> list[tuple[dict | None, bytes, bytes]]:
    """The (data, name, raw) triples the gateway hands a stream translation."""
    out = []
    for event in SSEParser().feed(body, final=True):
        try:
            data = orjson.loads(event.data) if event.data and not event.is_done else None
        except orjson.JSONDecodeError:
            data = None
        out.append((data if isinstance(data, dict) else None, event.name, event.raw))
    return out


def contains(actual: Any, expected: Any, path: str = "") -> None:
    """`expected` is a fragment of `actual`: dicts by their keys, lists item by item."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            if value is ABSENT:
                assert key not in actual, f"{path}.{key} should be absent: {actual[key]!r}"
            else:
                assert key in actual, f"{path}.{key} missing in {actual!r}"
                contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            contains(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
