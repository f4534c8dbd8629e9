"""Guardrail config: the rules, and which policy (list of rules) applies to whom.

    guardrails:
      stream_window: 128            # streams hold back only what may still become a finding;
                                    # this many characters if a pattern can't tell (guardrails/hold.py)
      max_scan_chars: 1000000       # larger requests: text guardrails apply their fail mode
      max_scan_ms: 1000             # a request's scan past this: the rest apply their fail mode
      max_scan_ms_per_key_per_minute: 10000   # the scan time one key may buy per minute in a
                                    # worker; spent: 429 rate_limited before any scan (0: off)
      rules:
      - {name: pii, type: pii, action: redact, entities: [email, card, ssn, secret],
         allow: [noreply@anthropic.com, "*@corp.example"]}   # values never found (guardrails/allowed.py)
      - {name: injection, type: prompt_injection, action: block, directions: [request]}
      - {name: contacts, type: pii, action: redact, entities: [email, phone], where: [user, tool_results]}
                                    # where: the parts of a request a text rule reads (all by default);
                                    # {tool_results: [web_fetch, "mcp__*"]}: those tools' results only
      - {name: injection-model, type: injection_classifier, action: block, threshold: 0.9}
                                    # a model scores tool results (guardrails/injection_model.py)
                                    # code_aware (pii, default true): in tool results and fenced blocks,
                                    # authors' addresses and numbers that are ids, hashes or versions
                                    # are not PII (guardrails/code_aware.py)
      - {name: words, type: banned, action: block, words: [...], patterns: [...]}
      - {name: tools, type: tools, action: remove, allow: [get_weather]}
      - {name: caps, type: caps, max_prompt_tokens: 8000, max_tokens: 4096, max_messages: 200}
      - {name: codenames, type: plugin, address: 127.0.0.1:50090, timeout_ms: 200, fail_mode: closed}
      policies:                     # optional; without it every rule applies to everyone
        default: [pii, injection]
        teams: {support: [pii, injection, tools]}
        keys: {alice: [pii]}        # a key's policy wins over its team's
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..yamltree import Node

TYPES = ("pii", "prompt_injection", "injection_classifier", "banned", "tools", "caps", "plugin")
_TEXT_TYPES = ("pii", "prompt_injection", "injection_classifier", "banned", "plugin")
_ANSWER_TYPES = ("pii", "banned", "tools", "plugin", "prompt_injection")     # the rules that can read an answer
# What the injection classifier reads unless its rule says `where:`: the content an agent
# did not write (a tool's output), not its system prompt, tool definitions or its user.
_CLASSIFIER_WHERE = ("tool_results",)


@dataclass(frozen=True, slots=True)
class Caps:
    max_prompt_tokens: int | None
    max_tokens: int | None
    max_messages: int | None


@dataclass(frozen=True, slots=True)
class Guardrail:
    name: str
    type: str
    action: str                          # block | redact | log (tools: block | remove | log)
    directions: frozenset[str]           # request, response
    fail_mode: str                       # closed | open: when the guardrail cannot run
    detector: Any = None                 # .find(text) → findings; a PluginClient for plugins
    allow: frozenset[str] | None = None  # tools
    # The parts of a request it reads (dialects/request_parts.py); None: all of them.
    where: frozenset[str] | None = None
    # Tool results only of the tools these globs name (`where: [{tool_results: [...]}]`);
    # None: of every tool.
    tool_names: tuple[str, ...] | None = None
    # pii: tool results and fenced blocks read as code (guardrails/code_aware.py).
    code_aware: bool = False
    caps: Caps | None = None
    # What the findings depend on (type and rules, and the detectors' version): known
    # findings (known.py) are keyed by it, so other rules never meet them.
    digest: str = ""
    # Worked out when the rule is made: a call's check asks each several times a rule.
    scans_text: bool = field(init=False, compare=False, hash=False, repr=False)
    # Its detector scores whole texts, each read alone (the injection classifier).
    per_text: bool = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scans_text", self.type in _TEXT_TYPES)
        object.__setattr__(self, "per_text", bool(getattr(self.detector, "per_text", False)))

    def reads(self, part: str) -> bool:
        """Whether it reads that part of a request (an MCP call's arguments are the
        assistant's, its result a tool result)."""
        return self.where is None or part in self.where

    def reads_tool(self, name: str) -> bool:
        """Whether it reads the results of the tool called `name` (in `tool_results`)."""
        if self.tool_names is None:
            return True
        from fnmatch import fnmatchcase
        return any(fnmatchcase(name, glob) for glob in self.tool_names)


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    default: tuple[Guardrail, ...] = ()
    by_team: Mapping[str, tuple[Guardrail, ...]] = None
    by_key: Mapping[str, tuple[Guardrail, ...]] = None
    stream_window: int = 128
    max_scan_chars: int = 1_000_000
    max_scan_ms: int = 1000
    max_scan_ms_per_key_per_minute: int = 10_000
    # policy_reading's answers, by policy and direction: a call asks for the request's and
    # the response's rules several times, and the policies are few and never change.
    _reading: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)

    def policies(self) -> list[tuple[Guardrail, ...]]:
        """Every policy: the default, then the teams', then the keys'."""
        return [self.default, *(self.by_team or {}).values(), *(self.by_key or {}).values()]

    def plugin_addresses(self) -> set[str]:
        """The plugins any policy calls."""
        return {g.detector.address for policy in self.policies() for g in policy if g.type == "plugin" and g.detector}

    def policy_for(self, key) -> tuple[Guardrail, ...]:
        if self.by_key and key.id in self.by_key:
            return self.by_key[key.id]
        if self.by_team and key.team in self.by_team:
            return self.by_team[key.team]
        return self.default

    def policy_reading(self, key, direction: str) -> tuple[Guardrail, ...]:
        """The rules of `key`'s policy that read this direction ("request", "response"): a
        rule of a type that reads no answer (caps) is not among an answer's."""
        policy = self.policy_for(key)
        found = self._reading.get((id(policy), direction))    # (each policy is held here)
        if found is None:
            found = self._reading[(id(policy), direction)] = tuple(
                g for g in policy
                if direction in g.directions and (direction == "request" or g.type in _ANSWER_TYPES))
        return found


# The PII and injection detectors compile their screens when made: ~1 s of CPU. A process
# that only reads the config (the supervisor of `extproc up`) does not make them, and a
# worker makes each once: a reloaded config with the same rules shares them (they hold no
# per-request state).
_make_detectors = contextvars.ContextVar("make_detectors", default=True)


@contextlib.contextmanager
def detectors_not_made():
    """Parses configs without making their PII and injection detectors (left None)."""
    token = _make_detectors.set(False)
    try:
        yield
    finally:
        _make_detectors.reset(token)


@functools.cache
def _pii_detector(entities: tuple[str, ...]):
    from .fold import FoldingDetector     # look-alikes, odd spaces, invisible characters
    from .pii import PIIDetector
    return FoldingDetector(PIIDetector(entities))


def _where(node: Node) -> tuple[frozenset[str], tuple[str, ...] | None]:
    """The parts a rule reads, each named, or `{tool_results: [globs]}` for the results of
    the tools those globs name: (parts, the globs or None for every tool)."""
    from ..dialects.request_parts import PARTS, TOOL_RESULTS
    parts: set[str] = set()
    every_tool, globs = False, []
    for entry in node.elements():
        if isinstance(entry.value, dict):
            entry.only_keys("tool_results")
            named = [glob.str() for glob in entry.get(TOOL_RESULTS).elements()]
            if not named:
                entry.get(TOOL_RESULTS).fail("must name at least one tool (a name or a glob: mcp__*)")
            globs += named
            parts.add(TOOL_RESULTS)
        else:
            part = entry.choice(PARTS, "user")
            parts.add(part)
            every_tool |= part == TOOL_RESULTS
    if not parts:
        node.fail("must name at least one part of a request")
    return frozenset(parts), (None if every_tool or not globs else tuple(globs))


# The injection classifier's defaults (docs/decisions/injection-classifier.md: the
# threshold measured on public held-out sets and agents' tool results).
DEFAULT_THRESHOLD = 0.9
DEFAULT_MIN_CHARS = 64


def _model_digest(path: str | None, node: Node) -> str:
    from .injection_model import model_digest
    try:
        return model_digest(path)
    except OSError as error:
        node.fail(f"cannot read the model file: {error.strerror}")
        return ""


@functools.cache
def _classifier(path: str | None, _digest: str):
    """A model file read once per content (a file changed in place is read again on reload)."""
    from .injection_model import load_model
    return load_model(path)


def _classifier_detector(path: str | None, model_digest: str, threshold: float, min_chars: int, node: Node):
    from .injection_model import ClassifierDetector
    try:
        model = _classifier(path, model_digest)
    except (OSError, ValueError, KeyError) as error:
        node.fail(f"not a model file this gateway reads: {error}")
        return None
    return ClassifierDetector(model, threshold, min_chars)


@functools.cache
def _injection_detector():
    from .fold import FoldingDetector
    from .injection import InjectionDetector
    # Injection rules in Russian are written in Cyrillic, which folds to Latin look-alikes.
    return FoldingDetector(InjectionDetector(), also_original=True)


def parse_guardrails(node: Node) -> GuardrailSettings:
    if node.missing or node.value is None:
        return GuardrailSettings()
    node.only_keys("rules", "policies", "stream_window", "max_scan_chars", "max_scan_ms",
                   "max_scan_ms_per_key_per_minute")
    rules: dict[str, Guardrail] = {}
    for item in node.get("rules").elements():
        rule = _rule(item)
        if rule is None:
            continue
        if rule.name in rules:
            item.get("name").fail(f"guardrail name {rule.name!r} is used twice")
        rules[rule.name] = rule
    policies = node.get("policies")
    policies.only_keys("default", "teams", "keys")

    def names(list_node: Node) -> tuple[Guardrail, ...]:
        chosen = []
        for entry in list_node.elements():
            name = entry.str()
            if name not in rules:
                entry.fail(f"unknown guardrail {name!r}")
            else:
                chosen.append(rules[name])
        return tuple(chosen)

    default = names(policies.get("default")) if not policies.get("default").missing else tuple(rules.values())
    return GuardrailSettings(
        default=default,
        by_team={team: names(n) for team, n in policies.get("teams").items()},
        by_key={key: names(n) for key, n in policies.get("keys").items()},
        # Must exceed the shortest match of the longest secret pattern (~45 chars), or a
        # secret could leave before it is recognisable.
        stream_window=node.get("stream_window").number(128, integer=True, minimum=64),
        # Scanning costs ~0.5 s per MB in the worker's event loop: a hostile body must not
        # stall it. Past this many characters, text guardrails apply their fail mode.
        max_scan_chars=node.get("max_scan_chars").number(1_000_000, integer=True, minimum=1),
        # The scan runs in the worker's event loop: one tenant's hard-to-scan text must not
        # starve the others' requests. Past this, the request's remaining text guardrails
        # apply their fail mode (closed: 400).
        max_scan_ms=node.get("max_scan_ms").number(1000, integer=True, minimum=1),
        # What one key may make the request guardrails spend per minute in a worker
        # (stages/guard/scan_allowance.py): a key flooding hard-to-scan prompts, each refused,
        # cannot buy the worker's loop with them.
        max_scan_ms_per_key_per_minute=node.get("max_scan_ms_per_key_per_minute").number(
            10_000, integer=True, minimum=0),
    )


def _rule(item: Node) -> Guardrail | None:
    kind = item.get("type").choice(TYPES, "pii")
    common = ("name", "type", "action", "directions", "fail_mode", "where")
    extra = {"pii": ("entities", "allow", "code_aware"), "prompt_injection": (), "banned": ("words", "patterns", "allow"),
             "tools": ("allow",), "caps": ("max_prompt_tokens", "max_tokens", "max_messages"),
             "injection_classifier": ("threshold", "min_chars", "model"),
             "plugin": ("address", "timeout_ms")}[kind]
    item.only_keys(*common, *extra)
    actions = ("block", "remove", "log") if kind == "tools" else \
        ("block", "log") if kind in ("prompt_injection", "injection_classifier", "caps") else ("block", "redact", "log")
    default_directions = ["request"] if kind in ("prompt_injection", "injection_classifier", "caps") \
        else ["request", "response"]
    directions = item.get("directions")
    chosen = [d.choice(("request", "response"), "request") for d in directions.elements()] \
        if not directions.missing else default_directions
    guardrail = dict(name=item.get("name").str(kind), type=kind,
                     action=item.get("action").choice(actions, "block"),
                     directions=frozenset(chosen),
                     fail_mode=item.get("fail_mode").choice(("closed", "open"), "closed"))
    if kind not in _TEXT_TYPES and not item.get("where").missing:
        item.get("where").fail(f"a {kind} rule reads no text: where applies to text rules only")
    elif not item.get("where").missing:
        guardrail["where"], guardrail["tool_names"] = _where(item.get("where"))
    elif kind == "injection_classifier":
        guardrail["where"] = frozenset(_CLASSIFIER_WHERE)
    if kind == "pii":
        from .pii import ENTITIES
        entities = tuple(e.choice(ENTITIES, "email") for e in item.get("entities").elements()) \
            if not item.get("entities").missing else ENTITIES
        if _make_detectors.get():
            guardrail["detector"] = _pii_detector(entities)
        guardrail["code_aware"] = item.get("code_aware").bool(True)
    elif kind == "prompt_injection":
        if _make_detectors.get():
            guardrail["detector"] = _injection_detector()
    elif kind == "injection_classifier":
        if "response" in chosen:
            item.get("directions").fail("the injection classifier reads requests only")
        threshold = item.get("threshold").number(DEFAULT_THRESHOLD, minimum=0)
        if threshold > 1:
            item.get("threshold").fail("a probability: between 0 and 1")
        min_chars = item.get("min_chars").number(DEFAULT_MIN_CHARS, integer=True, minimum=1)
        path = item.get("model").str(None)          # None: the model the gateway ships
        model_digest = _model_digest(path, item.get("model"))
        if _make_detectors.get() and model_digest:
            guardrail["detector"] = _classifier_detector(path, model_digest, threshold, min_chars, item.get("model"))
        guardrail["digest"] = _digest(kind, item, (threshold, min_chars, model_digest))
    elif kind == "banned":
        import re

        from .banned import BannedDetector, shortest_match
        patterns = []
        for pattern in item.get("patterns").elements():
            try:
                re.compile(pattern.str())
            except re.error as error:
                pattern.fail(f"invalid regex: {error}")
                continue
            # A match of no characters has nothing to redact or block: it would put a
            # placeholder between two characters, and a stream could place it otherwise.
            if shortest_match(pattern.str()) == 0:
                pattern.fail("matches the empty string: a banned pattern must match at least one character")
                continue
            patterns.append(pattern.str())
        try:                            # together they must compile too (e.g. no duplicate group names)
            guardrail["detector"] = BannedDetector(tuple(w.str() for w in item.get("words").elements()),
                                                   tuple(patterns))
        except re.error as error:
            item.get("patterns").fail(f"the patterns do not combine into one regex: {error}")
    elif kind == "tools":
        guardrail["allow"] = frozenset(n.str() for n in item.get("allow").elements())
    elif kind == "caps":
        guardrail["caps"] = Caps(*(item.get(f).number(None, integer=True, minimum=1)
                                   for f in ("max_prompt_tokens", "max_tokens", "max_messages")))
    elif kind == "plugin":
        from .plugin import PluginClient
        guardrail["detector"] = PluginClient(item.get("address").str(),
                                             item.get("timeout_ms").number(200, minimum=1) / 1000)
    if kind == "banned" and "detector" in guardrail:          # not when invalid
        from .fold import FoldingDetector
        # An operator's banned words may be in a script the fold changes: those look at both.
        guardrail["detector"] = FoldingDetector(guardrail["detector"], also_original=True)
    if kind in ("pii", "banned") and guardrail.get("detector") is not None and not item.get("allow").missing:
        from .allowed import AllowedValues
        allowed = tuple(entry.str() for entry in item.get("allow").elements() if entry.str())
        if allowed:
            guardrail["detector"] = AllowedValues(guardrail["detector"], allowed)
    if kind in ("pii", "prompt_injection", "banned"):     # findings of the text alone
        guardrail["digest"] = _digest(kind, item)
    return Guardrail(**guardrail)


# Changes whenever what the detectors find changes without the config changing.
DETECTORS_VERSION = "2"


def _digest(kind: str, item, settings: tuple = ()) -> str:
    """A digest of what decides a text guardrail's findings: its type, its rules and
    `settings` (the classifier's threshold, minimum length and model)."""
    import hashlib
    rules = {field: [e.str() for e in item.get(field).elements()] if not item.get(field).missing else None
             for field in ("entities", "words", "patterns", "allow")}
    return hashlib.sha256(repr((DETECTORS_VERSION, kind, sorted(rules.items()), settings)).encode()).hexdigest()[:32]
