"""MCP profiles, the request side: who calls, which profile, which method and tool.

A profile's route (`/mcp/<profile>`, envoy/template.yaml) brings every JSON-RPC message
here before Envoy forwards it to the profile's server:
  request headers  the profile; the caller's key (401 with WWW-Authenticate); the
                   caller's Mcp-Session-Id checked against the caller it was issued to and
                   replaced by the server's own; the server's credential injected
  request body     one JSON-RPC message (batches, bad JSON, oversize: JSON-RPC errors);
                   methods outside the tool surface refused; `tools/call` of a tool the
                   caller may not use refused (answered here, never reaching the server);
                   the caller's request guardrails over the call's arguments
Refusals are JSON-RPC error objects, the HTTP status the MCP transport expects.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import itertools
import logging
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...api import jsonrpc
from ...config.envoy_contract import INTERNAL_HEADER_PREFIX
from ...config.mcp import McpProfile
from ...dialects.request_parts import ASSISTANT
from ...pipeline.call import Call
from ...observability import metrics
from ...pipeline.errors import GatewayError
from ...runs import recognise
from ...store import StoreUnavailable, maybe_await
from ...store.limits import plan_charges
from ...pipeline.stage import ImmediateAnswer, Stage
from ..admission import CALLER_CREDENTIAL_HEADERS, Admission, open_call, without_query_key
from .discovery import WELL_KNOWN, challenge, metadata_answer
from .guard import Reading, guard_strings, read_json
from .run_tools import RunTools

SESSION_HEADER = "mcp-session-id"
# Methods a profile passes to its server as they are: the handshake, liveness, the
# client's notifications. tools/list and tools/call are governed; the rest of MCP
# (resources, prompts, completion, logging) is not part of a tool profile.
_PASSED = frozenset(("initialize", "ping"))
_GOVERNED = frozenset(("tools/list", "tools/call"))
MAX_SESSION_ID = 512
MAX_LOGGED = 128
log = logging.getLogger("extproc.mcp")
_RESERVATION_PREFIX = "mcp" + uuid.uuid4().hex[:12]      # per process: made again in a forked worker


def _new_prefix() -> None:
    global _RESERVATION_PREFIX
    _RESERVATION_PREFIX = "mcp" + uuid.uuid4().hex[:12]


os.register_at_fork(after_in_child=_new_prefix)
_reservations = itertools.count()


@dataclass(slots=True)
class McpState:
    """What the MCP stages learn about one JSON-RPC call, for each other and the audit line."""
    profile: McpProfile | None = None
    allowed: frozenset[str] | None = frozenset()
    policy: str = ""                    # the access rule that applied ("team support")
    rpc_method: str = ""
    rpc_id: Any = None
    tool: str = ""
    server: str = ""                    # the tool's server (a combined profile's: by prefix)
    argument_bytes: int = 0
    session: bool = False               # the caller named a session (checked and bound)
    outcome: str = ""                   # set when decided; else from the HTTP status
    answer: str = ""                    # json | sse | other
    answered: bool = False              # the answer held the response to the caller's request
    verdicts: list = field(default_factory=list)
    run: str = ""                       # the id of the agent run the call belongs to (runs.recognise)
    decisions: list = field(default_factory=list)   # the run's tool policy (run_tools.py)


class McpError(GatewayError):
    """A refusal in JSON-RPC's shape, whatever the caller's API would be elsewhere."""

    def __init__(self, status: int, rpc_code: int, message: str, message_id: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, f"mcp_{-rpc_code}", message, headers=headers)
        self.rpc_code = rpc_code
        self.message_id = message_id

    def body(self, dialect: str = "openai", request_id: str | None = None) -> bytes:
        return jsonrpc.error_body(self.message_id, self.rpc_code, self.message)


def refuse(state: McpState, outcome: str, status: int, rpc_code: int, message: str,
           headers: dict[str, str] | None = None) -> McpError:
    state.outcome = outcome
    return McpError(status, rpc_code, message, state.rpc_id, headers)


class McpHold:
    """What the gate reserved of the tool-call rate limits, to settle at the call's end."""
    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = None


def state_of(call: Call) -> McpState:
    return call.mcp


class McpGate(Stage):
    name = "mcp_gate"
    reads = frozenset({"headers", "model_name", "raw_body"})
    writes = frozenset({"key", "mcp", "method", "path", "query", "request_id", "run", "verdicts"})

    def __init__(self, store=None, tools: RunTools | None = None) -> None:
        self.store = store              # the budget store: tool-call rate limits
        self.tools = tools              # taint across the run, pinned definitions
        self.admission = Admission()    # the model API's callers are the tools' callers

    def request_headers(self, call: Call, end_of_stream: bool) -> None:
        headers = open_call(call)
        state = call.mcp = McpState()
        # Envoy's own errors on this call are then written as JSON-RPC (local_reply_config).
        call.reply.add_metadata({"mcp": True})
        if call.path.startswith(WELL_KNOWN):
            state.rpc_method = "discovery"
            answer = metadata_answer(call)
            if answer is None:
                raise refuse(state, "not_found", 404, jsonrpc.METHOD_NOT_FOUND,
                             "No protected-resource metadata here: it is served for MCP profiles "
                             "where the gateway accepts tokens of an identity provider, at its public "
                             "URLs (mcp.public_urls; without them, a loopback host).")
            raise answer
        name = call.path.removeprefix("/mcp/").strip("/")
        profile = call.config.mcp.profiles.get(name)
        # A combined profile's servers get their credentials from the aggregator's hop.
        injected = (profile.server.credential_header
                    if profile and not profile.combined and profile.server.credential_value() else "")
        call.reply.remove_headers.extend(
            h for h in headers
            if (h in CALLER_CREDENTIAL_HEADERS or h.startswith(INTERNAL_HEADER_PREFIX)) and h != injected)
        if "key=" in call.query:            # Google's form of a caller's key: not for the server
            query, _ = without_query_key(call.query)
            call.reply.set_headers[":path"] = f"{call.path}?{query}" if query else call.path
        if profile is None:
            raise refuse(state, "not_found", 404, jsonrpc.METHOD_NOT_FOUND,
                         f"Unknown MCP profile '{name[:MAX_LOGGED]}'. Profiles are served at /mcp/<profile>.")
        state.profile = profile
        try:
            call.key = self.admission.authenticate(call)
        except GatewayError:
            presented = any(h in headers for h in CALLER_CREDENTIAL_HEADERS)
            raise refuse(state, "unauthorized", 401, jsonrpc.UNAUTHORIZED,
                         "Missing or unknown API key. Send it as 'Authorization: Bearer <key>'.",
                         {"www-authenticate": challenge(call, profile.name, presented)}) from None
        state.allowed, state.policy = profile.allowed_tools(call.key)
        if state.allowed is not None and not state.allowed:
            raise refuse(state, "forbidden", 403, jsonrpc.FORBIDDEN,
                         f"The MCP profile '{profile.name}' gives this caller no tool "
                         f"(policy: mcp profile '{profile.name}', {state.policy}).")
        if call.method == "GET":
            # No stream of server-initiated messages: every message the gateway passes is
            # the answer to a request it saw, so none escapes its guardrails (the
            # transport lets a server answer 405 here).
            raise refuse(state, "invalid", 405, jsonrpc.INVALID_REQUEST,
                         "This gateway answers MCP requests on POST only (no GET stream).",
                         {"allow": "POST, DELETE"})
        if call.method not in ("POST", "DELETE"):
            raise refuse(state, "invalid", 405, jsonrpc.INVALID_REQUEST,
                         f"MCP's streamable HTTP takes POST (and DELETE), not {call.method[:16]}.",
                         {"allow": "POST, DELETE"})
        presented = headers.get(SESSION_HEADER)
        if presented is not None:
            server_session = unwrap_session(presented, call.key.sha256, profile.name)
            if server_session is None:
                # Another caller's id, or a forged one: to this caller it does not exist.
                raise refuse(state, "session_refused", 404, jsonrpc.SESSION_NOT_FOUND,
                             "Session not found for this caller; initialize a new session.")
            state.session = True
            call.reply.set_headers[SESSION_HEADER] = server_session
        # The agent run: the caller's x-gateway-run or agent session header, else this MCP session.
        call.run = recognise(call.key.id, headers, mcp_session=presented)
        state.run = call.run.id if call.run is not None else ""
        if injected:
            call.reply.set_headers[injected] = profile.server.credential_value()
        if call.method == "POST" and end_of_stream:
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST,
                         "The request has no body; send one JSON-RPC message.")

    async def request_body(self, call: Call) -> None:
        state = state_of(call)
        raw = call.raw_body
        if len(raw) > call.config.mcp.max_message_bytes:
            raise refuse(state, "invalid", 413, jsonrpc.TOO_LARGE,
                         f"The message is larger than this gateway accepts "
                         f"({call.config.mcp.max_message_bytes} bytes).")
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise refuse(state, "invalid", 400, jsonrpc.PARSE_ERROR, "Parse error: the body is not JSON.") from None
        if isinstance(message, list):
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST,
                         "JSON-RPC batches are not accepted (MCP removed them in 2025-06-18); "
                         "send one message per request.")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST,
                         "Invalid request: a JSON-RPC 2.0 message is an object with \"jsonrpc\": \"2.0\".")
        state.rpc_id = jsonrpc.request_id(message)
        method = message.get("method")
        if method is None:
            if "result" in message or "error" in message:       # the client answering the server
                state.rpc_method = "response"
                return
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST,
                         "Invalid request: no method, and not a response.")
        if not isinstance(method, str):
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST, "Invalid request: the method is not a string.")
        state.rpc_method = method[:MAX_LOGGED]
        if "id" not in message:                                  # a notification
            if method.startswith("notifications/"):
                return
            raise ImmediateAnswer(202, b"")
        if state.rpc_id is None:
            raise refuse(state, "invalid", 400, jsonrpc.INVALID_REQUEST,
                         "Invalid request: the id must be a string or a number.")
        if method in _PASSED or method == "tools/list":
            await self._guard_params(call, state, message)
            return
        if method not in _GOVERNED:
            raise refuse(state, "invalid", 200, jsonrpc.METHOD_NOT_FOUND,
                         f"Method not found: '{method[:MAX_LOGGED]}'. MCP profiles of this gateway serve "
                         "initialize, ping, tools/list and tools/call.")
        await self._tool_call(call, state, message)

    async def _tool_call(self, call: Call, state: McpState, message: dict) -> None:
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str) or not name:
            raise refuse(state, "invalid", 200, jsonrpc.INVALID_PARAMS,
                         "Invalid params: tools/call needs params.name, the tool's name.")
        state.tool = name[:MAX_LOGGED]
        profile = state.profile
        state.server = profile.server_of(name) or ""
        if not state.server:
            raise refuse(state, "invalid", 200, jsonrpc.INVALID_PARAMS,
                         f"Unknown tool '{name[:MAX_LOGGED]}': the tools of the MCP profile '{profile.name}' "
                         f"are named <server>_<tool> ({', '.join(s.name for s in profile.servers)}).")
        allowed = state.allowed
        if (allowed is not None and name not in allowed) or (profile.tools is not None and name not in profile.tools):
            raise refuse(state, "refused", 200, jsonrpc.FORBIDDEN,
                         f"The tool '{name[:MAX_LOGGED]}' is not allowed for this caller "
                         f"(policy: mcp profile '{profile.name}', {state.policy}).")
        if self.tools is not None:
            refused = await self.tools.check_call(call, state)
            if refused is not None:
                outcome, why = refused
                raise refuse(state, outcome, 500 if outcome == "gateway_error" else 200,
                             jsonrpc.INTERNAL_ERROR if outcome == "gateway_error" else jsonrpc.FORBIDDEN, why)
        if profile.rate_limit is not None and self.store is not None:
            await self._rate_limit(call, state)
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise refuse(state, "invalid", 200, jsonrpc.INVALID_PARAMS,
                         "Invalid params: params.arguments must be an object.")
        state.argument_bytes = len(orjson.dumps(arguments)) if arguments else 0
        await self._guard_params(call, state, message)

    @staticmethod
    async def _guard_params(call: Call, state: McpState, message: dict) -> None:
        """The caller's request guardrails over every string and key of `params` (the
        arguments, `_meta`, any other field): the server reads them all. Redactions are
        written into the message the server gets; a block (or a value nested past the
        walk's bound, with a rule failing closed) refuses the call."""
        if not message.get("params"):
            return
        rules = [g for g in call.config.guardrails.policy_reading(call.key, "request")
                 if g.scans_text and g.reads(ASSISTANT)]
        if not rules:
            return
        reading = read_json(message, "params", Reading())
        blocked, changed = await guard_strings(call, rules, reading.slots, "request", reading.unread)
        if blocked:
            what = "tool call" if state.rpc_method == "tools/call" else "request"
            raise refuse(state, "blocked", 200, jsonrpc.BLOCKED,
                         f"The {what} was blocked by the guardrail '{blocked}'.")
        if changed:
            call.reply.body = orjson.dumps(message)
            call.reply.set_headers["content-length"] = str(len(call.reply.body))

    async def _rate_limit(self, call: Call, state: McpState) -> None:
        """One tool call counted against the profile's per-identity limit (the budget
        store's requests-per-minute counter: exact across workers and replicas)."""
        limit, now = state.profile.rate_limit, time.time()
        lease = call.config.store.lease_seconds
        charges = plan_charges((limit,), call.key, 0, 0.0, now, lease)
        rid = f"{call.request_id}:{_RESERVATION_PREFIX}{next(_reservations)}"
        try:
            admission = await maybe_await(self.store.reserve(rid, charges, now, now + lease))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "reserve").inc()
            log.error("budget store unavailable on an MCP rate limit: %s", error)
            if call.config.store.fail_mode == "open":
                return
            raise refuse(state, "gateway_error", 500, jsonrpc.INTERNAL_ERROR,
                         "The rate-limit store is unavailable; the tool call was not forwarded.") from None
        if not admission.admitted:
            retry_after = max(1, int(charges[0].window_end - now + 0.999))
            raise refuse(state, "rate_limited", 429, jsonrpc.RATE_LIMITED,
                         f"Rate limit '{limit.name}' ({limit.limit:g} tool calls per minute, "
                         f"{limit.scope} scope) has no room for this call.", {"retry-after": str(retry_after)})
        call.own(McpHold).held = (rid, charges)

    async def done(self, call: Call) -> None:
        hold = call.owned(McpHold)
        held = hold.held if hold is not None else None
        if held is None or self.store is None:
            return
        try:
            await maybe_await(self.store.settle(held[0], held[1], [0.0]))
        except StoreUnavailable as error:       # the lease frees it
            log.error("budget store unavailable on settle (request %s): %s", call.request_id, error)


SESSION_SECRET_ENV = "LLMGW_SESSION_SECRET"


@functools.cache
def gateway_secret() -> bytes:
    """The gateway's secret for session ids: LLMGW_SESSION_SECRET (set it, the same on
    every replica, for sessions that move between replicas), else the one `extproc up`
    generates at start and hands to its workers, else one for this process alone."""
    configured = os.environ.get(SESSION_SECRET_ENV, "")
    return configured.encode() if configured else secrets.token_bytes(32)


def _mac(caller: bytes, profile: str, session: str) -> str:
    message = b"\0".join([hashlib.sha256(caller).digest(), profile.encode(), session.encode()])
    digest = hmac.new(gateway_secret(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def wrap_session(session: str, caller: bytes, profile: str) -> str:
    """The id the caller sees: the server's, bound by the gateway's secret to the caller
    (`VirtualKey.sha256`: a key's digest, a token's issuer and subject) and the profile.
    Any worker or replica checks it without a session table; nobody without the secret
    can make one, and no other caller's is accepted."""
    return f"{session}.{_mac(caller, profile, session)}"


def unwrap_session(presented: str, caller: bytes, profile: str) -> str | None:
    """The server's session id, if `presented` was issued to this caller on this profile."""
    if len(presented) > MAX_SESSION_ID or not caller:
        return None
    session, dot, mac = presented.rpartition(".")
    if not dot or not session or not hmac.compare_digest(mac, _mac(caller, profile, session)):
        return None
    return session
