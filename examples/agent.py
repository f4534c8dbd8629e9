#!/usr/bin/env python3
"""A multi-model agent through the gateway: a code-review agent that asks a cheap model to
summarise a diff and a stronger model to review it, tags its calls, and prints their usage.

    pip install openai
    python examples/agent.py                  # reviews a built-in sample diff
    git diff | python examples/agent.py -     # or a diff on stdin, or: agent.py change.diff

Every call carries two tag headers, `x-gateway-tag-agent: code-review` and
`x-gateway-tag-task: summarise|review`. The gateway strips them before the provider and
writes them on the call's log line (`"tags": {"agent": "code-review", "task": "review"}`);
with `observability.tag_labels: [agent, task]` they also label
`gateway_tagged_requests_total`, so spend can be told apart per agent and task.

GATEWAY_BASE_URL and GATEWAY_API_KEY point it at a gateway (default: the quickstart's,
http://127.0.0.1:10000/v1 with sk-demo-alice); AGENT_SUMMARY_MODEL (default gpt-4o-mini)
and AGENT_REVIEW_MODEL (default gpt-4o) pick the two models.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from openai import OpenAI, OpenAIError

BASE_URL = os.environ.get("GATEWAY_BASE_URL", "http://127.0.0.1:10000/v1")
API_KEY = os.environ.get("GATEWAY_API_KEY", "sk-demo-alice")
SUMMARY_MODEL = os.environ.get("AGENT_SUMMARY_MODEL", "gpt-4o-mini")
REVIEW_MODEL = os.environ.get("AGENT_REVIEW_MODEL", "gpt-4o")
AGENT = "code-review"

SAMPLE_DIFF = """\
--- a/billing/client.py
+++ b/billing/client.py
@@ -12,9 +12,15 @@ class BillingClient:
     def fetch_invoice(self, invoice_id: str) -> dict:
-        response = self.session.get(f"{self.base}/invoices/{invoice_id}")
-        response.raise_for_status()
-        return response.json()
+        for attempt in range(5):
+            response = self.session.get(f"{self.base}/invoices/{invoice_id}")
+            if response.status_code == 200:
+                return response.json()
+            if response.status_code >= 500:
+                continue
+            response.raise_for_status()
+        raise RuntimeError("billing service unavailable")
"""


@dataclass
class Step:
    task: str
    model: str
    backend: str
    request_id: str
    input_tokens: int
    output_tokens: int


def ask(client: OpenAI, task: str, model: str, system: str, user: str, max_tokens: int) -> tuple[str, Step]:
    """One tagged call; its answer, and what it cost in tokens."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        max_tokens=max_tokens,
        extra_headers={"x-gateway-tag-agent": AGENT, "x-gateway-tag-task": task},
    )
    completion = raw.parse()
    usage = completion.usage
    step = Step(task, model, raw.headers.get("x-gateway-backend", "?"), raw.headers.get("x-request-id", ""),
                usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
    return completion.choices[0].message.content or "", step


def read_diff(argv: list[str]) -> str:
    if not argv:
        return SAMPLE_DIFF
    if argv[0] == "-":
        return sys.stdin.read()
    with open(argv[0], encoding="utf-8") as handle:
        return handle.read()


def main() -> int:
    diff = read_diff(sys.argv[1:])
    if not diff.strip():
        print("the diff is empty", file=sys.stderr)
        return 1
    client = OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=120)
    steps: list[Step] = []
    try:
        summary, step = ask(
            client, "summarise", SUMMARY_MODEL,
            "You summarise code changes for reviewers: what changed and why, in three bullet points.",
            f"Summarise this diff:\n\n{diff}", max_tokens=200)
        steps.append(step)
        print(f"== summary ({step.model})\n{summary}\n")
        review, step = ask(
            client, "review", REVIEW_MODEL,
            "You are a senior reviewer. Point out bugs, risky behaviour and missing tests; be specific.",
            f"Summary of the change:\n{summary}\n\nThe diff:\n\n{diff}\n\nReview it.", max_tokens=400)
        steps.append(step)
        print(f"== review ({step.model})\n{review}\n")
    except OpenAIError as error:
        print(f"the agent failed: {error}", file=sys.stderr)
        return 1

    print("== usage")
    print(f"{'task':<10} {'model':<14} {'backend':<12} {'input':>7} {'output':>7}  request id")
    for s in steps:
        print(f"{s.task:<10} {s.model:<14} {s.backend:<12} {s.input_tokens:>7} {s.output_tokens:>7}  {s.request_id}")
    print(f"{'total':<38} {sum(s.input_tokens for s in steps):>7} {sum(s.output_tokens for s in steps):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
