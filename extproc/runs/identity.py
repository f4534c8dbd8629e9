"""Which run a call belongs to: from the caller's run header, an agent's own session
header, or a body field an agent fills with its session; scoped by the caller's key.

The run id is a digest of the key's id and the value the caller sent, so
- a value of any length or bytes gives an id of 24 hex characters (nothing the caller
  sent reaches a store key, a log line's id or a metric as it was sent);
- one key never joins another key's run, whatever value it sends;
- the same value sent in `x-gateway-run` and in an agent's session header is one run
  (a caller may name its agent's session on its MCP calls to join them).

What each client sends was seen at the mock (tests/agent_requests/README.md); a client
not in the table can always send `x-gateway-run`."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

RUN_HEADER = "x-gateway-run"            # any caller: "these calls are one task"
MCP_SESSION_HEADER = "mcp-session-id"   # an MCP session is a run of its own unless named
NAME_CHARS = 64                         # a run's value shown as sent when this short and plain
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class Client(NamedTuple):
    name: str                 # as the run's record and per-client settings name it
    user_agent: str           # the start of its user-agent
    run_headers: tuple[str, ...] = ()   # request headers that name its run, first found wins
    run_body_field: str = ""  # a top-level body field that names its run (when no header does)


# The agents whose calls name their run themselves, and how (each checked at the mock):
# Claude Code 2.1 sends x-claude-code-session-id, new for each run; Codex CLI 0.169 sends
# session-id, and the same value as the Responses body's prompt_cache_key. Gemini CLI 0.61
# sends only x-gemini-api-privileged-user-id, the same across runs (not a run), and Qwen
# Code 0.24 nothing: their calls are a run only with x-gateway-run.
CLIENTS: tuple[Client, ...] = (
    Client("claude-code", "claude-cli/", ("x-claude-code-session-id",)),
    Client("codex", "codex_cli_rs/", ("session-id",), "prompt_cache_key"),
    Client("codex", "codex_exec/", ("session-id",), "prompt_cache_key"),
    Client("gemini-cli", "GeminiCLI/"),
    Client("qwen-code", "QwenCode/"),
    Client("opencode", "opencode/"),
)
_ANY = Client("", "")
_BY_PREFIX = {client.user_agent: client for client in CLIENTS}
# A session header any client might send, read only when its client is not recognised
# by its user-agent (Codex behind a proxy that rewrites it, a script copying it).
_SESSION_HEADERS = tuple(dict.fromkeys(h for client in CLIENTS for h in client.run_headers))


class Run(NamedTuple):
    id: str                   # 24 hex characters: the key's and the value's digest
    name: str                 # the value as sent when short and plain, else "sha256:<16 hex>"
    source: str               # the header (or "body:<field>", MCP_SESSION_HEADER) that named it
    client: str               # "claude-code", "codex", ... or "" when not recognised
    inferred: bool = False    # no id named it: the gateway inferred it (stages/runs/unnamed.py)


_BY_AGENT: dict[str, Client] = {}      # user-agent -> its client: a caller sends one, many times
_AGENTS_KEPT = 1024


def client_of(headers: dict[str, str]) -> Client:
    """The agent that sent the call, by its user-agent's start; a blank Client if none."""
    agent = headers.get("user-agent", "")
    if not agent:
        return _ANY
    found = _BY_AGENT.get(agent)
    if found is None:
        if len(_BY_AGENT) >= _AGENTS_KEPT:      # bounded: user-agents are the caller's to choose
            _BY_AGENT.clear()
        found = _BY_AGENT[agent] = _client_by_agent(agent)
    return found


def _client_by_agent(agent: str) -> Client:
    slash = agent.find("/")
    if slash <= 0:
        return _ANY
    found = _BY_PREFIX.get(agent[:slash + 1])
    if found is None:           # a named variant: Gemini CLI 0.61's "GeminiCLI-<surface>/0.61.0/..."
        dash = agent.find("-", 0, slash)
        found = _BY_PREFIX.get(agent[:dash] + "/") if dash > 0 else None
    return found or _ANY


def recognise(key_id: str, headers: dict[str, str], body: object = None,
              mcp_session: str | None = None) -> Run | None:
    """The run a call of key `key_id` belongs to, or None when nothing names one.
    First found wins: `x-gateway-run`; the client's own session header (any known one
    when the client is not recognised); the client's body field; the MCP session."""
    if not key_id:
        return None
    client = client_of(headers)
    value = headers.get(RUN_HEADER)
    source = RUN_HEADER
    if not value:
        for source in client.run_headers or _SESSION_HEADERS:
            value = headers.get(source)
            if value:
                break
    if not value and client.run_body_field and isinstance(body, dict):
        found = body.get(client.run_body_field)
        if isinstance(found, str) and found:
            value, source = found, "body:" + client.run_body_field
    if not value and mcp_session:
        value, source = mcp_session, MCP_SESSION_HEADER
    if not value:
        return None
    return Run(run_id(key_id, value), display_name(value), source, client.name)


def run_id(key_id: str, value: str) -> str:
    material = key_id.encode("utf-8", "surrogateescape") + b"\0" + value.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(material, digest_size=12).hexdigest()


def display_name(value: str) -> str:
    """What operators see of the caller's value: itself when short and plain, else its digest."""
    if len(value) <= NAME_CHARS and _PLAIN.issuperset(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]
