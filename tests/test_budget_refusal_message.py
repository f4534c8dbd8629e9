"""The budget refusal's message for each kind of limit, and for a refusal that does not
know the request's needs (the precheck's): what it needed, what is left, when it resets."""

from __future__ import annotations

from extproc.stages.budget.limits import _refusal_message
from extproc.store.limits import Charge, Limit

NOW = 1_795_720_000.0       # 2026-11-26T19:06:40Z


def charge(kind: str, limit: float, window: str | None, reserve: float = 0.0, count_now: float = 0.0) -> Charge:
    return Charge(Limit("b", "team", None, kind, limit, window), "b|research|0", reserve, count_now,
                  NOW + 600 if window else NOW + 900)


def test_tokens_say_the_estimate_what_is_left_and_the_reset():
    message = _refusal_message(charge("tokens", 2000, "hour", reserve=5012), "budget_exceeded", 592, NOW)
    assert message == ("Budget 'b' (2000 tokens per hour, team scope) has no room for this request: it needs an "
                       "estimated 5,012 tokens, 592 tokens left, the hour window resets in 10m0s "
                       "(at 2026-11-26T19:16:40Z).")


def test_usd_in_dollars_and_requests_counted():
    usd = _refusal_message(charge("usd", 0.5, "day", reserve=0.73), "budget_exceeded", 0.12, NOW)
    assert "it needs an estimated $0.7300, $0.1200 left, the day window resets in 10m0s" in usd
    requests = _refusal_message(charge("requests", 60, "minute", count_now=1), "rate_limited", 0, NOW)
    assert requests.startswith("Rate limit 'b' (60 requests per minute") and "it needs 1 request, 0 requests left" \
        in requests


def test_concurrency_says_when_to_retry_not_a_window():
    message = _refusal_message(charge("concurrent", 4, None, reserve=1), "rate_limited", 0, NOW)
    assert "0 concurrent requests free" in message and "retry in 1s" in message and "window" not in message


def test_a_refusal_that_does_not_know_the_request_says_what_is_left():
    message = _refusal_message(charge("tokens", 2000, "hour"), "budget_exceeded", -40, NOW, needed=False)
    assert "needs" not in message and "0 tokens left, the hour window resets in 10m0s" in message
