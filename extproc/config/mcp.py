"""The `mcp` section: MCP servers behind the gateway and the profiles that expose their tools.

    mcp:
      max_message_bytes: 1048576     # a JSON-RPC message larger than this: 413
      oauth_scopes: [mcp:tools]      # in the 401's challenge and the protected-resource
                                     # metadata (served where identity.jwt is set)
      public_urls: [https://gateway.example.com]   # the gateway's URLs as clients reach it:
                                     # OAuth discovery names the one the Host matches
      aggregator:                    # serves the profiles that combine several servers
        address: 127.0.0.1:10130     # where the service's aggregator listens (Envoy routes there)
        upstream_address: 127.0.0.1:10131   # Envoy's loopback listener the aggregator reaches
                                            # each server through (retries, failover, TLS)
      servers:
        demo:
          url: http://127.0.0.1:10110/mcp       # streamable HTTP; Envoy's cluster is made from it
          failover_urls: [http://127.0.0.1:10120/mcp]   # replicas Envoy fails over to, in order
          credential: {env: DEMO_MCP_TOKEN}     # injected by the gateway; callers never see it
          credential_header: authorization      # sent as "Bearer <credential>" (else the raw value)
          labels: {fetch_note: [untrusted_content], send_email: [egress]}   # mcp_taint.py
      profiles:
        demo:                        # served at /mcp/demo
          server: demo               # or `servers: [demo, ops]`: their tools, each named
                                     # <server>_<tool> (allowlists name them so)
          tools: "*"                 # or a list: the server's tools this profile exposes
          access:                    # who may call which of them (a key's entry wins over its
            teams: {research: "*", support: [echo, get_time]}   # user's, which wins over its team's)
            users: {}
            keys: {}
            default: []              # everyone else: no tool ("*" for all, a list for some)
          rate_limit: {calls_per_minute: 60, scope: key}   # tool calls, per key (user, team)
          pin_tools: true            # the first tools/list of each server pinned; a tool
                                     # changed or added later hidden until approved
          results:
            guardrails: [prompt-injection]   # run on tool results (default: every rule of the
                                             # caller's policy that reads text)
            on_block: quarantine     # quarantine: the result replaced by a notice; error: a
                                     # JSON-RPC error instead of the result
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlparse

from ..guardrails.config import Guardrail, GuardrailSettings
from ..store.limits import Limit
from .providers import Secret, _credential
from ..yamltree import Node
from .local_ports import port_offset, shift_address
from .mcp_taint import NO_LABELS, TaintPolicy, labels_of, parse_labels, parse_taint

ALL = None      # an allowlist of every tool
SEPARATOR = "_"  # a combined profile's tool is "<server>_<tool>"


@dataclass(frozen=True, slots=True)
class McpServer:
    name: str
    url: str
    cluster: str
    credential: Secret | None
    credential_header: str
    failover_urls: tuple[str, ...] = ()     # tried in order when the ones before fail (Envoy)
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)   # tool -> labels (mcp_taint.py)

    @property
    def path(self) -> str:
        return urlparse(self.url).path or "/"

    @property
    def authority(self) -> str:
        return urlparse(self.url).netloc

    def credential_value(self) -> str:
        """The header value the gateway sends the server (empty: none)."""
        if self.credential is None:
            return ""
        secret = self.credential.reveal()
        return f"Bearer {secret}" if self.credential_header == "authorization" else secret


@dataclass(frozen=True, slots=True)
class McpProfile:
    name: str
    servers: tuple[McpServer, ...]             # one: served as it is; several: through the aggregator
    tools: frozenset[str] | None               # None: every tool of the server
    by_key: Mapping[str, frozenset[str] | None]
    by_user: Mapping[str, frozenset[str] | None]
    by_team: Mapping[str, frozenset[str] | None]
    default: frozenset[str] | None
    result_guardrails: tuple[Guardrail, ...] | None  # None: the caller's policy's text rules
    on_block: str                              # quarantine | error
    rate_limit: Limit | None = None            # tool calls per minute, per key/user/team
    pin_tools: bool = True                     # tool definitions pinned (store/tool_pins.py)

    @property
    def combined(self) -> bool:
        """Several servers: the aggregator serves their tools, prefixed by server."""
        return len(self.servers) > 1

    @property
    def server(self) -> McpServer:
        """The server of a single-server profile (a combined profile's first)."""
        return self.servers[0]

    def server_of(self, tool: str) -> str | None:
        """The server a tool of this profile belongs to (None: no server's prefix)."""
        if not self.combined:
            return self.servers[0].name
        for server in self.servers:
            if tool.startswith(server.name + SEPARATOR):
                return server.name
        return None

    def labels_of(self, tool: str) -> frozenset[str]:
        """The labels the config gives a tool of this profile (named as the profile names it)."""
        if not self.combined:
            return labels_of(self.servers[0].labels, tool) if self.servers[0].labels else NO_LABELS
        for server in self.servers:
            if server.labels and tool.startswith(server.name + SEPARATOR):
                return labels_of(server.labels, tool[len(server.name) + 1:])
        return NO_LABELS

    def allowed_tools(self, key) -> tuple[frozenset[str] | None, str]:
        """The tools `key` may call here (None: every tool the profile exposes) and the
        rule that decided, for refusals and the audit line."""
        for rules, name, what in ((self.by_key, key.id, "key"), (self.by_user, key.user, "user"),
                                  (self.by_team, key.team, "team")):
            if name in rules:
                return self._within(rules[name]), f"{what} {name}"
        return self._within(self.default), "default"

    def _within(self, allowed: frozenset[str] | None) -> frozenset[str] | None:
        if allowed is ALL:
            return self.tools
        return allowed if self.tools is ALL else allowed & self.tools


@dataclass(frozen=True, slots=True)
class McpAggregator:
    """The service's process serving combined profiles, and Envoy's loopback listener it
    reaches each server through."""
    address: str = "127.0.0.1:10130"
    upstream_address: str = "127.0.0.1:10131"

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream_address}"


@dataclass(frozen=True, slots=True)
class McpSettings:
    servers: Mapping[str, McpServer] = field(default_factory=dict)
    profiles: Mapping[str, McpProfile] = field(default_factory=dict)
    max_message_bytes: int = 1_048_576
    aggregator: McpAggregator = McpAggregator()
    oauth_scopes: tuple[str, ...] = ()         # advertised to MCP clients (OAuth discovery)
    # The gateway's URLs as MCP clients reach it ("https://host[:port]"), which OAuth
    # discovery names (stages/mcp_discovery.py); none: loopback hosts only.
    public_urls: tuple[str, ...] = ()
    taint: TaintPolicy = TaintPolicy()         # what a tainted run may still do (mcp_taint.py)

    @property
    def combined_profiles(self) -> tuple[McpProfile, ...]:
        return tuple(p for p in self.profiles.values() if p.combined)


def parse_mcp(node: Node, guardrails: GuardrailSettings, strict_credentials: bool) -> McpSettings:
    if node.missing or node.value is None:
        return McpSettings()
    rules = {rule.name: rule for policy in guardrails.policies() for rule in policy}
    node.only_keys("servers", "profiles", "max_message_bytes", "aggregator", "oauth_scopes",
                   "public_urls", "taint")
    scopes = tuple(entry.str() for entry in node.get("oauth_scopes").elements())
    for entry, scope in zip(node.get("oauth_scopes").elements(), scopes):
        if not scope or any(ch in scope for ch in ' "\\') or not scope.isprintable():
            entry.fail("a scope is one token: printable, no spaces or quotes")
    public_urls = []
    for entry in node.get("public_urls").elements():
        url = entry.str().rstrip("/")
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?", url):
            entry.fail("an http:// or https:// URL of a host (and port), no path: https://gateway.example.com")
        public_urls.append(url)
    servers = {name: _server(name, item, strict_credentials) for name, item in node.get("servers").items()}
    profiles = {}
    for name, item in node.get("profiles").items():
        if not _is_segment(name):
            item.fail("a profile's name is a path segment: letters, digits, '-', '_' and '.'")
        profile = _profile(name, item, servers, rules)
        if profile is not None:
            profiles[name] = profile
    return McpSettings(servers=servers, profiles=profiles,
                       max_message_bytes=node.get("max_message_bytes").number(1_048_576, integer=True,
                                                                              minimum=1024),
                       aggregator=_aggregator(node.get("aggregator")), oauth_scopes=scopes,
                       public_urls=tuple(public_urls), taint=parse_taint(node.get("taint")))


def _aggregator(node: Node) -> McpAggregator:
    # The defaults move with `extproc up --port-offset` as the config's own addresses do.
    offset = port_offset()
    defaults = McpAggregator()
    defaults = McpAggregator(address=shift_address(defaults.address, offset),
                             upstream_address=shift_address(defaults.upstream_address, offset))
    if node.missing or node.value is None:
        return defaults
    node.only_keys("address", "upstream_address")
    addresses = []
    for name, default in (("address", defaults.address), ("upstream_address", defaults.upstream_address)):
        value = node.get(name).str(default)
        host, colon, port = value.rpartition(":")
        if not colon or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            node.get(name).fail("must be host:port")
        addresses.append(value)
    return McpAggregator(address=addresses[0], upstream_address=addresses[1])


def _server(name: str, node: Node, strict: bool) -> McpServer:
    node.only_keys("url", "failover_urls", "credential", "credential_header", "labels")
    url = node.get("url").str()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        node.get("url").fail("must be an http:// or https:// URL of the server's MCP endpoint")
    failover = tuple(entry.str() for entry in node.get("failover_urls").elements())
    for entry, other in zip(node.get("failover_urls").elements(), failover):
        theirs = urlparse(other)
        if (theirs.scheme, theirs.path) != (parsed.scheme, parsed.path) or not theirs.hostname:
            entry.fail("must have the url's scheme and path (a replica of the same server)")
    source, secret = ("", None) if node.get("credential").missing else _credential(node.get("credential"), strict)
    return McpServer(name=name, url=url, cluster=f"mcp_{name}".replace("-", "_"), credential=secret,
                     credential_header=node.get("credential_header").str("authorization").lower(),
                     failover_urls=failover, labels=parse_labels(node.get("labels")))


def _profile(name: str, node: Node, servers: Mapping[str, McpServer],
             rules: Mapping[str, Guardrail]) -> McpProfile | None:
    node.only_keys("server", "servers", "tools", "access", "results", "rate_limit", "pin_tools")
    chosen_servers = _profile_servers(node, servers)
    if chosen_servers is None:
        return None
    access = node.get("access")
    access.only_keys("keys", "users", "teams", "default")
    results = node.get("results")
    results.only_keys("guardrails", "on_block")
    chosen = None
    if not results.get("guardrails").missing:
        chosen = []
        for entry in results.get("guardrails").elements():
            rule = rules.get(entry.str())
            if rule is None or not rule.scans_text:
                entry.fail(f"unknown guardrail {entry.str()!r} (or one that reads no text: caps, tools)")
            else:
                chosen.append(rule)
        chosen = tuple(chosen)
    profile = McpProfile(
        name=name, servers=chosen_servers, tools=_tools(node.get("tools"), ALL),
        by_key={k: _tools(v, frozenset()) for k, v in access.get("keys").items()},
        by_user={k: _tools(v, frozenset()) for k, v in access.get("users").items()},
        by_team={k: _tools(v, frozenset()) for k, v in access.get("teams").items()},
        default=_tools(access.get("default"), frozenset()),
        result_guardrails=chosen,
        on_block=results.get("on_block").choice(("quarantine", "error"), "quarantine"),
        rate_limit=_rate_limit(name, node.get("rate_limit")), pin_tools=node.get("pin_tools").bool(True))
    if profile.combined:
        _check_prefixed(profile, node)
    return profile


def _profile_servers(node: Node, servers: Mapping[str, McpServer]) -> tuple[McpServer, ...] | None:
    """`server: a` or `servers: [a, b]`: known, distinct, and, when several, prefixes that
    name each tool's server unambiguously."""
    one, several = node.get("server"), node.get("servers")
    if one.missing == several.missing:
        node.fail("needs `server: <name>` or `servers: [<name>, ...]` (one of them)")
        return None
    entries = [one] if several.missing else list(several.elements())
    if not entries:
        several.fail("must name at least one server")
        return None
    chosen: list[McpServer] = []
    for entry in entries:
        server = servers.get(entry.str())
        if server is None:
            entry.fail(f"unknown MCP server {entry.str()!r}")
        elif server in chosen:
            entry.fail(f"server {entry.str()!r} is named twice")
        else:
            chosen.append(server)
    if len(chosen) != len(entries):
        return None
    prefixes = [s.name + SEPARATOR for s in chosen]
    for a in prefixes:
        for b in prefixes:
            if a != b and b.startswith(a):
                several.fail(f"servers {a[:-1]!r} and {b[:-1]!r} cannot be combined: a tool named "
                             f"'{b}…' could be either's (tools are named <server>{SEPARATOR}<tool>)")
                return None
    return tuple(chosen)


def _check_prefixed(profile: McpProfile, node: Node) -> None:
    """In a combined profile, every tool the config names carries its server's prefix."""
    access = node.get("access")
    lists = [(node.get("tools"), profile.tools)]
    for section, rules in (("keys", profile.by_key), ("users", profile.by_user), ("teams", profile.by_team)):
        lists += [(access.get(section).get(k), v) for k, v in rules.items()]
    lists.append((access.get("default"), profile.default))
    for where, tools in lists:
        for tool in sorted(tools or ()):
            if profile.server_of(tool) is None:
                where.fail(f"tool {tool!r} names no server of the profile: a combined profile's tools "
                           f"are <server>{SEPARATOR}<tool>, with <server> one of "
                           f"{', '.join(s.name for s in profile.servers)}")
                return


def _rate_limit(profile: str, node: Node) -> Limit | None:
    """Tool calls per minute of each key (user, team), counted in the budget store (the
    same counters as `rate_limits`, shared by workers and replicas)."""
    if node.missing or node.value is None:
        return None
    node.only_keys("calls_per_minute", "scope")
    return Limit(name=f"mcp.{profile}.tool_calls", scope=node.get("scope").choice(("key", "user", "team"), "key"),
                 match=None, kind="requests", limit=node.get("calls_per_minute").number(integer=True, minimum=1),
                 window="minute")


def _tools(node: Node, default: frozenset[str] | None) -> frozenset[str] | None:
    """"*" for every tool, else a list of tool names."""
    if node.missing or node.value is None:
        return default
    if node.value == "*":
        return ALL
    return frozenset(entry.str() for entry in node.elements())


def _is_segment(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "-_." for ch in name)
