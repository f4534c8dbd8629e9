"""Minted tokens (credentials/minted.py): the first is there when `start` returns, the next
comes before the current one expires, a failing token endpoint is retried while the
current token lasts, and reloads share one token per key. The mint functions here stand
in for a token endpoint; test_vertex_e2e.py runs google-auth against the mock's."""

from __future__ import annotations

import itertools
import threading
import time

from extproc.credentials.minted import MintedToken, shared, start_minting


def counting_mint(lifetime: float):
    numbers = itertools.count(1)
    return lambda: (f"token-{next(numbers)}", lifetime)


def test_the_first_token_is_there_when_start_returns():
    token = MintedToken("test", counting_mint(60))
    assert token.reveal() == ""
    assert token.start(wait=5) is True and token.reveal() == "token-1"
    token.stop()


def test_the_next_token_comes_before_the_current_one_expires():
    token = MintedToken("test", counting_mint(2.0))     # due again after 1.5 s
    token.start(wait=5)
    seen = set()
    deadline = time.monotonic() + 5.0      # minted at 0, 1.5, 3 and 4.5 s: 3 even on a loaded host
    while time.monotonic() < deadline:
        value = token.reveal()
        assert value                                   # never a gap
        seen.add(value)
        time.sleep(0.05)
    token.stop()
    assert len(seen) >= 3 and token.mints >= len(seen)


def test_a_failing_endpoint_is_retried_and_the_current_token_kept():
    calls = {"n": 0}
    failing = threading.Event()

    def mint():
        calls["n"] += 1
        if failing.is_set():
            raise OSError("token endpoint down")
        return f"token-{calls['n']}", 3.0

    token = MintedToken("test", mint)     # due again after 1.5 s; a failure retried 1 s later
    token.start(wait=5)
    failing.set()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        if calls["n"] >= 2:
            failing.clear()               # the endpoint is back for the retry
        assert token.reveal()             # the first token holds until the retry replaces it
        time.sleep(0.05)
    token.stop()
    assert calls["n"] >= 3 and token.reveal() not in ("", "token-1")


def test_a_token_that_never_comes_is_reported_late_and_reads_empty():
    def mint():
        raise OSError("unreachable")

    token = MintedToken("nowhere", mint)
    assert start_minting([token, "not minted"], wait=0.3) == ["nowhere"]
    assert token.reveal() == ""
    token.stop()


def test_reloads_share_one_token_per_key():
    first = shared(("test", "key-a"), "a", counting_mint(60))
    assert shared(("test", "key-a"), "a again", counting_mint(60)) is first
    assert shared(("test", "key-b"), "b", counting_mint(60)) is not first
    assert "token" not in repr(first) and repr(first) == "MintedToken(a)"
