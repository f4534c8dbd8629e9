"""A call's pending bytes (transport/grpc_calls.py): the frames' payloads as they came,
taken off as messages. Whatever the split, the bytes taken are the bytes sent, in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.transport.grpc_calls import Pending


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=12),
       st.lists(st.integers(0, 900), max_size=12))
def test_bytes_taken_are_the_bytes_sent_whatever_the_split(data, cuts, takes):
    pending, at = Pending(), 0
    for cut in cuts:                        # the payloads as the frames bring them
        pending.append(data[at:at + cut])
        at += cut
    pending.append(data[at:])
    assert len(pending) == len(data)
    taken, left = [], data
    for count in takes:
        count = min(count, len(pending))
        assert pending.peek(5) == left[:5]
        piece = pending.take(count)
        assert piece == left[:count] and type(piece) is bytes
        taken.append(piece)
        left = left[count:]
        assert len(pending) == len(left)
    assert pending.take(len(pending)) == left
    assert len(pending) == 0 and pending.take(0) == b""
    pending.append(b"more")
    pending.clear()
    assert len(pending) == 0 and pending.peek(5) == b""
