"""What calls cost: the shipped price table (USD per million tokens) and the arithmetic.

A model is priced by its exact name at the provider, or by an alias listed here (a dated
snapshot such as `gpt-4o-2024-08-06`, which providers echo back as the model that
answered). Never by prefix: `gpt-5-pro` is not `gpt-5` (it costs 12x more), `o1-mini` is
not `o1`. A model the table does not know has no price: the config's `price:` must give
one, `extproc check` warns, and a USD budget refuses it rather than charging $0.

Keep in step with the providers' price pages (openai.com/api/pricing,
anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing); a config `price:` always wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from .usage import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of each kind."""
    input: float = 0.0
    cached_input: float = 0.0         # prompt tokens read from the provider's cache
    output: float = 0.0               # reasoning tokens included: they are billed as output
    cache_write: float | None = None  # prompt tokens written to the cache (Anthropic); None: as input

    def cost(self, usage: Usage) -> float:
        fresh = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        write = self.input if self.cache_write is None else self.cache_write
        return (fresh * self.input + usage.cached_tokens * self.cached_input
                + usage.cache_write_tokens * write + usage.output_tokens * self.output) / 1_000_000


def _openai(input: float, cached: float | None, output: float) -> Price:
    return Price(input, input if cached is None else cached, output)


def _anthropic(input: float, output: float) -> Price:
    """Anthropic's rule: a cache read costs 0.1x the input price, a 5-minute cache write 1.25x."""
    return Price(input, round(input * 0.1, 6), output, round(input * 1.25, 6))


PRICES: dict[str, Price] = {
    # OpenAI (openai.com/api/pricing)
    "gpt-5": _openai(1.25, 0.125, 10.00),
    "gpt-5-mini": _openai(0.25, 0.025, 2.00),
    "gpt-5-nano": _openai(0.05, 0.005, 0.40),
    "gpt-5-pro": _openai(15.00, None, 120.00),
    "gpt-4.1": _openai(2.00, 0.50, 8.00),
    "gpt-4.1-mini": _openai(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _openai(0.10, 0.025, 0.40),
    "gpt-4o": _openai(2.50, 1.25, 10.00),
    "gpt-4o-2024-05-13": _openai(5.00, None, 15.00),
    "gpt-4o-mini": _openai(0.15, 0.075, 0.60),
    "o1": _openai(15.00, 7.50, 60.00),
    "o1-mini": _openai(1.10, 0.55, 4.40),
    "o1-pro": _openai(150.00, None, 600.00),
    "o3": _openai(2.00, 0.50, 8.00),
    "o3-mini": _openai(1.10, 0.55, 4.40),
    "o3-pro": _openai(20.00, None, 80.00),
    "o4-mini": _openai(1.10, 0.275, 4.40),
    "gpt-4-turbo": _openai(10.00, None, 30.00),
    "gpt-3.5-turbo": _openai(0.50, None, 1.50),
    "text-embedding-3-small": _openai(0.02, None, 0.0),
    "text-embedding-3-large": _openai(0.13, None, 0.0),
    "text-embedding-ada-002": _openai(0.10, None, 0.0),
    # Anthropic (anthropic.com/pricing)
    "claude-opus-4-6": _anthropic(5.00, 25.00),
    "claude-opus-4-5": _anthropic(5.00, 25.00),
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4-0": _anthropic(15.00, 75.00),
    "claude-sonnet-4-6": _anthropic(3.00, 15.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),
    "claude-sonnet-4-0": _anthropic(3.00, 15.00),
    "claude-3-7-sonnet-latest": _anthropic(3.00, 15.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-5-haiku-latest": _anthropic(0.80, 4.00),
    # Google (ai.google.dev/gemini-api/docs/pricing; prompts up to 200k tokens; a cache
    # read at its context-caching price, storage not counted)
    "gemini-2.5-pro": _openai(1.25, 0.125, 10.00),
    "gemini-2.5-flash": _openai(0.30, 0.03, 2.50),
    "gemini-2.5-flash-lite": _openai(0.10, 0.01, 0.40),
    # Amazon on Bedrock (aws.amazon.com/bedrock/pricing, us-east-1, on demand)
    "amazon.nova-micro-v1:0": _openai(0.035, 0.00875, 0.14),
    "amazon.nova-lite-v1:0": _openai(0.06, 0.015, 0.24),
    "amazon.nova-pro-v1:0": _openai(0.80, 0.20, 3.20),
}

# Other names of the same model and price: dated snapshots, and the ids providers
# answer with.
ALIASES: dict[str, str] = {
    "gpt-5-2025-08-07": "gpt-5",
    "gpt-5-mini-2025-08-07": "gpt-5-mini",
    "gpt-5-nano-2025-08-07": "gpt-5-nano",
    "gpt-5-pro-2025-10-06": "gpt-5-pro",
    "gpt-4.1-2025-04-14": "gpt-4.1",
    "gpt-4.1-mini-2025-04-14": "gpt-4.1-mini",
    "gpt-4.1-nano-2025-04-14": "gpt-4.1-nano",
    "gpt-4o-2024-08-06": "gpt-4o",
    "gpt-4o-2024-11-20": "gpt-4o",
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini",
    "o1-2024-12-17": "o1",
    "o1-mini-2024-09-12": "o1-mini",
    "o1-pro-2025-03-19": "o1-pro",
    "o3-2025-04-16": "o3",
    "o3-mini-2025-01-31": "o3-mini",
    "o3-pro-2025-06-10": "o3-pro",
    "o4-mini-2025-04-16": "o4-mini",
    "gpt-4-turbo-2024-04-09": "gpt-4-turbo",
    "gpt-3.5-turbo-0125": "gpt-3.5-turbo",
    "claude-opus-4-5-20251101": "claude-opus-4-5",
    "claude-opus-4-1-20250805": "claude-opus-4-1",
    "claude-opus-4-20250514": "claude-opus-4-0",
    "claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
    "claude-sonnet-4-20250514": "claude-sonnet-4-0",
    "claude-3-7-sonnet-20250219": "claude-3-7-sonnet-latest",
    "claude-haiku-4-5-20251001": "claude-haiku-4-5",
    "claude-3-5-haiku-20241022": "claude-3-5-haiku-latest",
    # Bedrock's ids of the same models (cross-region inference profiles: us., eu., apac., global.)
    **{f"{region}anthropic.{model}-v1:0": name for region in ("", "us.", "eu.", "apac.", "global.")
       for model, name in (("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
                           ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
                           ("claude-opus-4-1-20250805", "claude-opus-4-1"),
                           ("claude-sonnet-4-20250514", "claude-sonnet-4-0"))},
    **{f"us.amazon.{model}": f"amazon.{model}" for model in ("nova-micro-v1:0", "nova-lite-v1:0", "nova-pro-v1:0")},
}


def shipped_price(model: str) -> Price | None:
    """The shipped price of a model by its exact name or a listed alias; None when unknown."""
    return PRICES.get(ALIASES.get(model, model))


# The most one answer of a model may generate (its provider's documented maximum output):
# a budgeted call that sets no output cap is reserved up to this, and capped only where
# its budget has less room. Keep in step with the providers' model pages.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-5": 128_000, "gpt-5-mini": 128_000, "gpt-5-nano": 128_000, "gpt-5-pro": 272_000,
    "gpt-4.1": 32_768, "gpt-4.1-mini": 32_768, "gpt-4.1-nano": 32_768,
    "gpt-4o": 16_384, "gpt-4o-2024-05-13": 4_096, "gpt-4o-mini": 16_384,
    "o1": 100_000, "o1-mini": 65_536, "o1-pro": 100_000,
    "o3": 100_000, "o3-mini": 100_000, "o3-pro": 100_000, "o4-mini": 100_000,
    "gpt-4-turbo": 4_096, "gpt-3.5-turbo": 4_096,
    "claude-opus-4-6": 128_000, "claude-opus-4-5": 64_000, "claude-opus-4-1": 32_000,
    "claude-opus-4-0": 32_000, "claude-sonnet-4-6": 64_000, "claude-sonnet-4-5": 64_000,
    "claude-sonnet-4-0": 64_000, "claude-3-7-sonnet-latest": 64_000, "claude-haiku-4-5": 64_000,
    "claude-3-5-haiku-latest": 8_192,
    "gemini-2.5-pro": 65_536, "gemini-2.5-flash": 65_536, "gemini-2.5-flash-lite": 65_536,
    "amazon.nova-micro-v1:0": 10_000, "amazon.nova-lite-v1:0": 10_000, "amazon.nova-pro-v1:0": 10_000,
}

# A model whose maximum output neither the table nor the config (`max_output_tokens:`)
# gives: the gateway cannot tell how long its answer may be, so a budgeted call that sets
# no cap is capped at this (or less, as its budget's room requires).
UNKNOWN_MAX_OUTPUT_TOKENS = 4_096


def shipped_max_output(model: str) -> int | None:
    """The shipped maximum output of a model by its exact name or a listed alias."""
    return MAX_OUTPUT_TOKENS.get(ALIASES.get(model, model))
