#!/usr/bin/env python3
"""Embeddings through the gateway: vectors for a few texts, and which is closest to a query.

    pip install openai
    python examples/embeddings.py "budget refused"

GATEWAY_BASE_URL, GATEWAY_API_KEY as in chat.py; GATEWAY_EMBEDDING_MODEL picks the model
(default text-embedding-3-small). The quickstart's mock provider returns made-up vectors,
so its ranking means nothing; a real provider's does.
"""

from __future__ import annotations

import math
import os
import sys

from openai import OpenAI, OpenAIError

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1")
API_KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")
MODEL = os.environ.get("GATEWAY_EMBEDDING_MODEL", "text-embedding-3-small")

DOCUMENTS = [
    "A budget refuses a call with HTTP 429 once its window is spent.",
    "Envoy retries a virtual model's next backend when the first one fails.",
    "Guardrails redact e-mail addresses and card numbers before the provider sees them.",
]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def main() -> int:
    query = " ".join(sys.argv[1:]) or "Why was my request refused?"
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=60)
    try:
        result = client.embeddings.create(model=MODEL, input=[query, *DOCUMENTS])
    except OpenAIError as error:
        print(f"embeddings failed: {error}", file=sys.stderr)
        return 1
    vectors = [item.embedding for item in sorted(result.data, key=lambda item: item.index)]
    if len(vectors) != len(DOCUMENTS) + 1:
        print(f"expected {len(DOCUMENTS) + 1} vectors, got {len(vectors)}", file=sys.stderr)
        return 1
    print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions ({result.model})")
    ranked = sorted(((cosine(vectors[0], v), doc) for v, doc in zip(vectors[1:], DOCUMENTS)), reverse=True)
    for score, doc in ranked:
        print(f"  {score:+.3f}  {doc}")
    print(f"usage: {result.usage.prompt_tokens} input tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
