#!/usr/bin/env python3
"""One chat completion through the gateway: the answer, the backend that served it, the usage.

    pip install openai
    python examples/chat.py "Write a haiku about load balancers."

GATEWAY_BASE_URL and GATEWAY_API_KEY point it at a gateway (default: the quickstart's,
http://127.0.0.1:10000/v1 with the demo key sk-demo-alice); GATEWAY_MODEL picks the model.
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI, OpenAIError

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1")
API_KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")
MODEL = os.environ.get("GATEWAY_MODEL", "gpt-4o-mini")


def main() -> int:
    prompt = " ".join(sys.argv[1:]) or "Say hello to the platform team in one sentence."
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=60)
    try:
        # with_raw_response: the gateway's own headers, then the parsed completion.
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=200,
        )
    except OpenAIError as error:
        print(f"chat failed: {error}", file=sys.stderr)
        return 1
    completion = raw.parse()
    print(completion.choices[0].message.content)
    print(f"model: {completion.model}  backend: {raw.headers.get('x-gateway-backend')}  "
          f"request id: {raw.headers.get('x-request-id')}")
    usage = completion.usage
    if usage is None:
        print("no usage in the answer", file=sys.stderr)
        return 1
    print(f"usage: {usage.prompt_tokens} input + {usage.completion_tokens} output = "
          f"{usage.total_tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
