"""A call's pending bytes (transport/grpc_calls.py): the frames' payloads as they came,
taken off as messages. Whatever the split, and whether a payload is bytes or a view of
the read that brought it, the bytes taken are the bytes sent, in order; and the views
kept past a read's end never pin more than twice what the call holds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.transport.grpc_calls import Pending


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=12),
       st.lists(st.integers(0, 900), max_size=12), st.lists(st.booleans(), max_size=13),
       st.sets(st.integers(0, 12)))
def test_bytes_taken_are_the_bytes_sent_whatever_the_split(data, cuts, takes, as_views, read_ends):
    pending, at = Pending(), 0
    read = bytes(data)                      # (the connection's read: immutable)
    for index, cut in enumerate([*cuts, len(data)]):        # the payloads as the frames bring them
        piece = memoryview(read)[at:at + cut] if index < len(as_views) and as_views[index] else read[at:at + cut]
        pending.append(piece)
        at += len(piece)
        if index in read_ends:
            pending.unpin()
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


def test_views_of_a_read_stay_while_they_are_most_of_it_and_are_copied_otherwise():
    read = bytes(range(256)) * 1024               # a 256 KB read
    whole = Pending()
    for start in range(0, len(read), 16384):       # a message's frames: all of the read
        whole.append(memoryview(read)[start:start + 16384])
    whole.unpin()
    assert all(type(chunk) is memoryview for chunk in whole.chunks)      # copied once, when taken
    few = Pending()
    few.append(memoryview(read)[:2048])            # two small payloads of a read that brought others
    few.append(memoryview(read)[4096:6144])
    few.unpin()
    assert [type(chunk) for chunk in few.chunks] == [bytes, bytes]
    assert few.take(4096) == read[:2048] + read[4096:6144]


def _pinned(pending: Pending) -> int:
    return sum({id(c.obj): len(c.obj) for c in pending.chunks if isinstance(c, memoryview)}.values())


def test_what_a_take_leaves_never_pins_more_than_twice_itself():
    """A message taken off between two reads (its handler read it): the bytes left, views
    of reads mostly taken, are copied then, not held until a read for the call comes."""
    first, second = bytes(3100), bytes(range(256)) * 17      # two reads: 3,100 and 4,352 bytes
    pending = Pending()
    pending.append(memoryview(first)[:3000])                 # a message's frames
    pending.append(memoryview(second)[:1025])                # the next message's start
    pending.unpin()                                          # 7,452 pinned for 4,025: kept
    assert _pinned(pending) <= 2 * len(pending)
    assert pending.take(3000) == first[:3000]
    assert len(pending) == 1025 and _pinned(pending) <= 2 * len(pending)
    assert pending.take(1025) == second[:1025]
    split = Pending()                                        # a view cut by the take
    split.append(memoryview(second)[:4000])
    split.unpin()
    assert split.take(3900) == second[:3900] and _pinned(split) <= 2 * len(split)
