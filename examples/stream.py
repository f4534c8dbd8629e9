#!/usr/bin/env python3
"""A streamed chat completion: text as it is generated, then the usage of the whole stream.

    pip install openai
    python examples/stream.py "Explain retries and failover in three sentences."

The gateway counts every stream's usage whether or not the client asks for it; asking
(`stream_options={"include_usage": True}`) gets it as a last chunk with no choices.
GATEWAY_BASE_URL, GATEWAY_API_KEY, GATEWAY_MODEL as in chat.py (the default model here
is the quickstart's virtual model `smart`, whose first backend is down: Envoy fails over).
"""

from __future__ import annotations

import os
import sys
import time

from openai import OpenAI, OpenAIError

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1")
API_KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")
MODEL = os.environ.get("GATEWAY_MODEL", "smart")


def main() -> int:
    prompt = " ".join(sys.argv[1:]) or "Stream me a short answer about gateways, word by word."
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=120)
    started = time.perf_counter()
    first_token_ms = None
    usage = None
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=300,
            stream=True,
            stream_options={"include_usage": True},
        )
        backend = raw.headers.get("x-gateway-backend")
        for chunk in raw.parse():
            if chunk.usage is not None:            # the last chunk: usage, no choices
                usage = chunk.usage
            for choice in chunk.choices:
                text = choice.delta.content or ""
                if text and first_token_ms is None:
                    first_token_ms = (time.perf_counter() - started) * 1000
                print(text, end="", flush=True)
    except OpenAIError as error:
        print(f"\nstream failed: {error}", file=sys.stderr)
        return 1
    print()
    if usage is None:
        print("the stream ended without its usage chunk", file=sys.stderr)
        return 1
    print(f"backend: {backend}  first token after {first_token_ms or 0:.0f} ms")
    print(f"usage: {usage.prompt_tokens} input + {usage.completion_tokens} output = "
          f"{usage.total_tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
