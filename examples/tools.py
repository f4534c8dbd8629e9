#!/usr/bin/env python3
"""Tool calling through the gateway: the model asks for a tool, the script runs it, the
model answers with its result.

    pip install openai
    python examples/tools.py "How do I rotate a virtual key?"

The gateway passes `tools` and tool calls through unchanged (a `tools` guardrail can
allow-list them, and PII guardrails read tool arguments and results too). The quickstart's
mock provider calls the tool named in the `x-mock-tool-call` header; real providers ignore
that header and let the model decide. GATEWAY_BASE_URL, GATEWAY_API_KEY, GATEWAY_MODEL as
in chat.py.
"""

from __future__ import annotations

import json
import os
import sys

from openai import OpenAI, OpenAIError

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1")
API_KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")
MODEL = os.environ.get("GATEWAY_MODEL", "gpt-4o-mini")

TOOLS = [{
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the platform team's runbooks and return the matching passages.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "What to look for."}},
            "required": ["text"],
        },
    },
}]

RUNBOOKS = {
    "rotate": "Rotating a key: add the new key's sha256 under keys[], deploy, hand it out, "
              "then remove the old entry; the ConfigMap reload applies each step.",
    "budget": "A 429 budget_exceeded names the budget; retry-after says when its window resets.",
    "failover": "Virtual models list several backends; Envoy retries the next one on 429 and 5xx.",
}


def search_docs(text: str) -> str:
    """The tool itself: a toy search over a few runbook passages."""
    hits = [passage for word, passage in RUNBOOKS.items() if word in text.lower()]
    return "\n".join(hits) or "No runbook matches."


def main() -> int:
    question = " ".join(sys.argv[1:]) or "How do I rotate a virtual key without downtime?"
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=60)
    messages: list[dict] = [{"role": "user", "content": question}]
    try:
        first = client.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, max_tokens=300,
            extra_headers={"x-mock-tool-call": "search_docs"},   # the quickstart's mock only
        )
        message = first.choices[0].message
        if not message.tool_calls:
            print(message.content)
            print("(the model answered without calling a tool)")
            return 0
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            arguments = json.loads(call.function.arguments or "{}")
            print(f"tool call: {call.function.name}({json.dumps(arguments)})")
            result = search_docs(str(arguments.get("text", "")))
            print(f"tool result: {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        final = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, max_tokens=300)
    except (OpenAIError, json.JSONDecodeError) as error:
        print(f"tool calling failed: {error}", file=sys.stderr)
        return 1
    print(f"answer: {final.choices[0].message.content}")
    used = [c.usage for c in (first, final) if c.usage is not None]
    print(f"usage: {sum(u.prompt_tokens for u in used)} input + "
          f"{sum(u.completion_tokens for u in used)} output tokens over {len(used)} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
