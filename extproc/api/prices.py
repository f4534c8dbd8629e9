"""Shipped default prices (USD per million tokens) for common OpenAI models.

Used when a model in the config has no `price`; matched on the backend's model
name, longest prefix first, so dated snapshots (gpt-4o-2024-08-06) are covered.
A config `price` always wins. Keep in step with the provider's price list.
"""

from __future__ import annotations

# model prefix: (input, cached input, output)
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5": (1.25, 0.125, 10.00),
    "o4-mini": (1.10, 0.275, 4.40),
    "o3-mini": (1.10, 0.55, 4.40),
    "o3": (2.00, 0.50, 8.00),
    "o1": (15.00, 7.50, 60.00),
    "gpt-4-turbo": (10.00, 10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 0.50, 1.50),
    "text-embedding-3-small": (0.02, 0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.13, 0.0),
    "text-embedding-ada-002": (0.10, 0.10, 0.0),
}
_BY_LENGTH = sorted(DEFAULT_PRICES, key=len, reverse=True)


def default_price(model: str) -> tuple[float, float, float] | None:
    for prefix in _BY_LENGTH:
        if model == prefix or model.startswith(prefix + "-"):
            return DEFAULT_PRICES[prefix]
    return None
