"""A call's usage in one shape, whatever dialect the provider answered in.

`input_tokens` counts every prompt token, those read from or written to the provider's
prompt cache included (OpenAI's `prompt_tokens` does; Anthropic's `input_tokens` does
not, and its translation adds them). Prices apply per kind (prices.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0             # of input_tokens: read from the provider's cache
    reasoning_tokens: int = 0          # of output_tokens: thinking the answer does not show
    estimated: bool = False            # counted by the gateway: the provider gave none
    cache_write_tokens: int = 0        # of input_tokens: written to the provider's cache

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens
