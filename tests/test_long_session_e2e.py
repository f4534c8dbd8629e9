"""An agent session that resends its whole history every turn, through real Envoy with
the quickstart's defaults: it grows past max_scan_chars (1,000,000) and every turn still
answers, the secret of its second turn redacted on every turn as the provider sees it."""

from __future__ import annotations

import httpx
import pytest
from gateway_stack import GatewayStack

ALICE = {"authorization": "Bearer sk-demo-alice"}
SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def tool_result(n: int, size: int) -> str:
    line = f"turn {n}: src/module_{n}.py passes its tests, nothing else to report here\n"
    return (line * (size // len(line) + 1))[:size]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    stack = GatewayStack(tmp_path_factory.mktemp("long-session"), workers=1).start()
    yield stack
    stack.stop()


def test_a_session_past_max_scan_chars_answers_every_turn_with_its_old_secret_redacted(one_worker):
    gateway = one_worker
    messages = [{"role": "system", "content": "You are a coding agent. Use the tools you have."}]
    sizes = []
    for n in range(1, 9):                           # ~2 MB at the end
        question = f"Turn {n}: what does module {n} do?"
        if n == 2:
            question += f" My deploy key is {SECRET}, keep it safe."
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call{n}", "type": "function",
                "function": {"name": "read_file", "arguments": f'{{"path": "src/module_{n}.py"}}'}}]},
            {"role": "tool", "tool_call_id": f"call{n}", "content": tool_result(n, 260_000)}]
        gateway.clear_received()
        answer = httpx.post(f"{gateway.base_url}/chat/completions", headers=ALICE, timeout=60,
                            json={"model": "gpt-4o-mini", "messages": messages, "max_tokens": 8})
        assert answer.status_code == 200, (n, answer.text[:300])
        [seen] = [r for r in gateway.received() if "messages" in (r.get("body") or {})] or \
            gateway.received()[-1:]
        text = str(seen)
        sizes.append(sum(len(str(m.get("content") or "")) for m in messages))
        if n >= 2:
            assert SECRET not in text and "[SECRET]" in text, n
    assert sizes[-1] > 1_500_000
