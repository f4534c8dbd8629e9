"""The headers a budget's answer carries: OpenAI's x-ratelimit-* from the tightest limits
the call was reserved against (its refusals carry them too)."""

from __future__ import annotations

from ...store.limits import Charge


def reset_in(seconds: float) -> str:
    """OpenAI's reset format: "1s", "6m0s"."""
    seconds = max(0, int(seconds + 0.999))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def ratelimit_headers(charges: list[Charge], remaining: dict[str, float], now: float) -> dict[str, str]:
    """x-ratelimit-{limit,remaining,reset}-{requests,tokens} from the tightest limits."""
    headers = {}
    for unit, kinds in (("requests", ("requests",)), ("tokens", ("tokens",))):
        candidates = [c for c in charges if c.limit.kind in kinds and c.counter in remaining]
        if not candidates:
            continue
        tight = min(candidates, key=lambda c: remaining[c.counter])
        headers[f"x-ratelimit-limit-{unit}"] = str(int(tight.limit.limit))
        headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, int(remaining[tight.counter])))
        headers[f"x-ratelimit-reset-{unit}"] = reset_in(tight.window_end - now)
    return headers
