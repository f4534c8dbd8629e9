"""The headers a budget's answer carries: OpenAI's x-ratelimit-* from the tightest limits
the call was reserved against (its refusals carry them too)."""

from __future__ import annotations

from ...store.limits import Charge


def reset_in(seconds: float) -> str:
    """OpenAI's reset format: "1s", "6m0s"."""
    seconds = max(0, int(seconds + 0.999))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_HEADERS = {kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
            for kind in ("requests", "tokens")}     # (a limit's kind names its unit)


def ratelimit_headers(charges: list[Charge], remaining: dict[str, float], now: float) -> dict[str, str]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens} from the tightest limits (the
    first of those with the least left)."""
    tightest: dict[str, tuple[Charge, float]] = {}
    for charge in charges:
        kind = charge.limit.kind
        if kind in _HEADERS and charge.counter in remaining:
            left = remaining[charge.counter]
            found = tightest.get(kind)
            if found is None or left < found[1]:
                tightest[kind] = (charge, left)
    headers = {}
    for kind, (limit_name, remaining_name, reset_name) in _HEADERS.items():
        found = tightest.get(kind)
        if found is not None:
            charge, left = found
            headers[limit_name] = str(int(charge.limit.limit))
            headers[remaining_name] = str(max(0, int(left)))
            headers[reset_name] = reset_in(charge.window_end - now)
    return headers
