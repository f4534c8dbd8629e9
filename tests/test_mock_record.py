"""The mock provider's record of the requests it received (GET /_mock/requests): bounded in
entries and in the characters of their bodies, the newest always kept, so a quickstart
serving an agent's long histories for hours does not grow without end."""

from __future__ import annotations

import orjson
import pytest

from extproc.mock.listener import KEPT, KEPT_BODY_CHARS, LargeBodies, Listener, keep


def test_the_record_keeps_the_newest_requests_within_its_bounds_in_count_and_in_characters():
    kept = Listener(name="t", port=1)
    for n in range(KEPT + 10):                              # small bodies: the count bounds
        keep(kept, {"path": "/v1/chat/completions", "body": f"{n:08d}"})
    assert len(kept.received) == KEPT
    assert kept.received[-1]["body"] == f"{KEPT + 9:08d}" and kept.received[0]["body"] == f"{10:08d}"

    history = "x" * (KEPT_BODY_CHARS // 8)                  # an agent's history, resent
    for n in range(20):
        keep(kept, {"path": "/v1/chat/completions", "body": history + str(n)})
    bodies = [entry["body"] for entry in kept.received]
    assert kept.received_chars == sum(map(len, bodies)) <= KEPT_BODY_CHARS
    # The oldest go first (the small ones, then histories): 8 histories are a few
    # characters over the bound, so the newest 7 stay.
    assert bodies == [history + str(n) for n in range(13, 20)]

    huge = "y" * (KEPT_BODY_CHARS + 1)                       # one over the bound alone: still kept
    keep(kept, {"path": "/v1/responses/r1", "method": "GET"})   # no body: counts nothing
    keep(kept, {"path": "/v1/chat/completions", "body": huge})
    assert [entry.get("body") for entry in kept.received] == [huge]
    assert kept.received_chars == len(huge)

    kept.received.clear()                                   # DELETE /_mock/requests
    keep(kept, {"path": "/v1/chat/completions", "body": "hi"})
    assert kept.received_chars == 2 and len(kept.received) == 1


def test_a_large_body_resent_is_decoded_and_parsed_once_and_only_its_own_bytes_answer():
    bodies = LargeBodies()
    history = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "é" * 20_000}]})
    assert len(history) >= LargeBodies.MIN_BYTES
    first = bodies.json(history)
    assert first == orjson.loads(history) and bodies.text(history) == history.decode()
    assert bodies.json(bytes(bytearray(history))) is first          # the same bytes again: parsed once
    other = history.replace(b"\xc3\xa9", b"e", 1)                  # one character differs
    assert bodies.json(other) == orjson.loads(other) and bodies.json(other) is not first
    assert bodies.text(history[:-1] + b"\xff") == (history[:-1] + b"\xff").decode("utf-8", "replace")
    with pytest.raises(orjson.JSONDecodeError):                      # refused as orjson refuses it
        bodies.json(history[:-1] + b"\xff")
    short = b'{"model": "m"}'                                       # a short one is not kept
    assert bodies.json(short) == {"model": "m"} and bodies.json(short) is not bodies.json(short)
    huge = b'{"t": "' + b"x" * LargeBodies.MAX_BYTES + b'"}'        # nor a huge one
    assert bodies.json(huge) is not bodies.json(huge)
    for n in range(LargeBodies.KEPT + 1):                            # bounded: the oldest goes
        bodies.json(history + b" " * (n + 1))
    assert bodies.json(history) is not first
