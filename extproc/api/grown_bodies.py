"""An agent's next body read as the body before it with a run of items changed: each turn
resends the history with the model's answer and the next question (or tool results)
added at the end of one top-level array, and perhaps its last items rewritten (a cache
marker moved). Where a kept body (api/resent_values.py) and the new one are the same
bytes but for such a run, only that run is read; everything else is the kept body's.
Imports nothing of the gateway.

Exact, not heuristic. The kept body's layout (where each top-level array's items end) is
known only where orjson's writing of its value is the body byte for byte (as JavaScript,
serde_json and httpx write JSON), or where it was found so from such a body: positions
are then computed, never searched for. The new body must be the kept body's bytes up to
the end of one of the array's items, then `, item, item...` (any whitespace), then the
kept body's bytes from that array's `]` to its end. msgspec reads that run as the items
of an array, so anything else in it (a `]`, a key, a trailing comma) fails the read and
the body is split as any other. The new body's value is then the kept body's with the
array's items from that point replaced by the run's, which is the value orjson would
give the whole: every byte outside the run is where it was, in the same context.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple, Union

import msgspec
import orjson

_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
# A body's top level: arrays and objects as the raw bytes of their items, scalars as values
# (api/resent_values.py reads whole bodies with it; a grown body's rest is read with it too).
TOP = msgspec.json.Decoder(dict[str, Union[list[msgspec.Raw], dict[str, msgspec.Raw], str, int, float, bool, None]])
_WHITESPACE = b" \t\r\n"        # JSON's
_COMMA = 0x2C
_STEP = 32_768                  # bytes compared at a time while finding where two bodies part

# A top-level array's place in a body: the offset of its '[', the offset after each of
# its items, the offset of its ']'.
Span = tuple[int, list[int], int]


class Record:
    """A kept body as it was read: its bytes, each top-level member (key, what its value
    came from, and for an array each item's length in bytes) and, once worked out, where
    its arrays lie (None: not yet; False: not known, the body is not laid out as orjson
    writes it)."""

    __slots__ = ("raw", "members", "spans")

    def __init__(self, raw: bytes, members: tuple, spans: dict[str, Span] | bool | None = None) -> None:
        self.raw, self.members, self.spans = raw, members, spans


def common_prefix(old: bytes, new: bytes) -> int:
    """How many bytes `old` and `new` share from their start (a memcmp a block at a
    time, then halving the block where they part)."""
    size = min(len(old), len(new))
    view = memoryview(old)
    at = 0
    while at < size:
        end = min(at + _STEP, size)
        if not new.startswith(view[at:end], at):
            break
        at = end
    else:
        return size
    low, high = at, min(at + _STEP, size)      # [0, low) shared; [low, high) not all
    while high - low > 1:
        middle = (low + high) // 2
        if new.startswith(view[low:middle], low):
            low = middle
        else:
            high = middle
    return high if new.startswith(view[low:high], low) else low


def spans_of(members: tuple, body: dict, size: int) -> dict[str, Span] | bool:
    """Where each top-level array of a body lies, for a body of `size` bytes whose bytes are
    orjson's writing of `body` (the caller has compared them): False if they do not add up."""
    at = 1                                      # after '{'
    spans: dict[str, Span] = {}
    for index, (key, _sources, lengths) in enumerate(members):
        at += (1 if index else 0) + len(orjson.dumps(key)) + 1     # ',' "key" ':'
        if lengths is None:
            at += len(orjson.dumps(body[key]))
            continue
        start, ends, end = at, [], at + 1
        for length in lengths:
            end += length
            ends.append(end)
            end += 1                            # ','
        close = ends[-1] if ends else start + 1
        spans[key] = (start, ends, close)
        at = close + 1
    return spans if at + 1 == size else False


class Growth(NamedTuple):
    """How a body grows a kept one: the array, how many of its items stay, the new items
    (their raw bytes, and all of them written as one array), the new body's spans (False:
    not known; None: not yet worked out), and the members after the array when they are
    not the kept body's (None: they are), read as the top level is."""
    key: str
    kept: int
    items: list
    listed: bytes
    spans: dict[str, Span] | bool | None
    after: dict | None = None


# The rest of a body whose members after the array changed too, read as a document of its
# own: the array's items (after a 0 standing for those kept) under the key "", then the
# members after it. A body of that shape is what the top level of the whole reads there.
_REST_HEAD = b'{"":[0'


def growth(record: Record, raw: bytes) -> Growth | None:
    """How `raw` grows the kept body, or None when it does not; where the members after the
    array changed too (a client writing a map's keys in another order every time), the rest
    is read as the top level is. Raises ValueError (msgspec's errors are ValueErrors) when
    the run cannot be read."""
    old, spans = record.raw, record.spans
    assert isinstance(spans, dict)
    same = common_prefix(old, raw)
    for key, (start, ends, close) in spans.items():
        if start < same <= close and ends:
            break
    else:
        return None
    kept = bisect_right(ends, same)             # the items that end before the bodies part
    if not kept:
        return None
    cut = ends[kept - 1]
    tail = len(old) - close                     # from the array's ']' to the body's end
    end = len(raw) - tail
    if end < cut or not raw.endswith(memoryview(old)[close:]):
        return _with_rest(key, kept, raw[cut:])
    run = raw[cut:end]
    stripped = run.lstrip(_WHITESPACE)
    if not stripped:
        listed, items = b"[]", []
    elif stripped[0] != _COMMA:
        return None
    else:
        listed = b"[" + stripped[1:] + b"]"
        items = _ITEMS.decode(listed)
        if not items:                           # a trailing comma
            return None
    lengths = [len(item) for item in items]
    if len(run) != sum(lengths) + len(items):   # whitespace: the new body's layout is not known
        return Growth(key, kept, items, listed, False)
    shift = len(raw) - len(old)
    grown: dict[str, Span] = {}
    for name, (start, ends_of, close_of) in spans.items():
        if name == key:
            at, new_ends = cut, ends[:kept]
            for length in lengths:
                at += 1 + length
                new_ends.append(at)
            grown[name] = (start, new_ends, end)
        elif start > close:
            grown[name] = (start + shift, [at + shift for at in ends_of], close_of + shift)
        else:
            grown[name] = (start, ends_of, close_of)
    return Growth(key, kept, items, listed, grown)


def _with_rest(key: str, kept: int, rest: bytes) -> Growth | None:
    """The growth of a body whose members after the array are its own: `rest`, from the
    end of the last item kept, read as the array's new items and the members after it.
    Its repeated keys are for the caller to find (in `listed`, the rest as a document)."""
    document = _REST_HEAD + rest
    members = TOP.decode(document)
    array = members.pop("", None)
    if type(array) is not list or not array or bytes(array[0]) != b"0":
        return None
    return Growth(key, kept, array[1:], document, None, members)


def spliced(raw: bytes, span: Span, items: list, changed: list[int]) -> bytes:
    """`raw` with the items `changed` (sorted indexes) of the array at `span` written again
    from `items` (orjson's writing): what orjson would write of the whole body whose other
    values are those `raw` holds, at the cost of the changed items alone. (A redaction in
    an agent's long history: the whole body written again cost ~1.3 ms for 4 MB.)"""
    start, ends, _close = span
    view = memoryview(raw)                      # (slices of it are not copies: one join is)
    pieces, at = [], 0
    for index in changed:
        first = start + 1 if index == 0 else ends[index - 1] + 1       # after '[' or ','
        pieces.append(view[at:first])
        pieces.append(orjson.dumps(items[index]))
        at = ends[index]
    pieces.append(view[at:])
    return b"".join(pieces)
