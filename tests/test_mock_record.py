"""The mock provider's record of the requests it received (GET /_mock/requests): bounded in
entries and in the characters of their bodies, the newest always kept, so a quickstart
serving an agent's long histories for hours does not grow without end."""

from __future__ import annotations

from extproc.mock.listener import KEPT, KEPT_BODY_CHARS, Listener, keep


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
