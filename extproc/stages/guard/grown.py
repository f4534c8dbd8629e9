"""What the request guardrails' read of a body leaves for the bodies that follow it: each
rule's findings by the path of the text they lie in, kept with the body's facts. An
agent's next turn, grown from that body, has only its new items' texts read; its old
texts get the findings they had (guardrails/known.py's Lookup, `states` and `before`),
and their redactions again. The same bytes sent again get them all without a read.
Part of the stages package: the same import rules (stages/__init__.py)."""

from __future__ import annotations

from itertools import compress
from operator import is_

from ...guardrails.config import Guardrail
from ...guardrails.known import AFTER, BEFORE, NEW
from ...guardrails.known_runs import reach_start
from ...guardrails.walk import KEY_NAME
from ...pipeline.call import Call

# A body's fact: the policy and model its texts were read under, and what each rule found
# (by path: {path: findings}, only the texts with some; {} for a rule that passed), or
# None for a rule whose read cannot be handed on (it could not run, it flagged: a
# detector that may stop at its first finding). Every rule's {}: the body passed.
READ = "request guardrails read"

# `kept` of a body sent again byte for byte: every text lies where it lay.
SAME_BYTES = ("", -1, True)


def read_before(facts: dict, call: Call, policy: tuple[Guardrail, ...]) -> tuple | None:
    """Each rule's findings in the body of these facts, read under this very policy (the
    rules of this config) for this model, on this endpoint; None if it was not. A plugin
    is asked every time: its verdict is its own."""
    read = facts.get((READ, call.endpoint.kind))
    if read is None or read[1] is not call.model or len(read[0]) != len(policy) or \
            not all(map(is_, read[0], policy)):
        return None
    return read[2]


def keep_read(facts: dict, call: Call, policy: tuple[Guardrail, ...], found: list) -> None:
    facts[(READ, call.endpoint.kind)] = (tuple(policy), call.model, tuple(found))


def by_path(paths: list[tuple], found: list[list]) -> dict:
    """A rule's findings, by the path of each text that has some (the texts without any,
    most of a history's, passed over in C)."""
    return {path: tuple(findings) for path, findings in zip(compress(paths, found), filter(None, found))}


def grown_states(body: dict, paths: list[tuple], array: str, count: int, after_kept: bool = True) -> list[int]:
    """For each string of a body grown from one the policy read (its `array`'s items from
    `count` on new): NEW (its item is new), or where it lies in the body before, which held
    it too: BEFORE the new items (in the array's old items or a member before the array),
    AFTER them (a member after the array, when those are the body before's, `after_kept`:
    else NEW; a top-level key's name is walked after its value). In the body's order:
    BEFORE..., NEW..., AFTER... The same bytes again (SAME_BYTES): every one BEFORE."""
    if count < 0:
        return [BEFORE] * len(paths)
    order = {key: index for index, key in enumerate(body)}
    at, get = order.get(array, -1), order.get
    after = AFTER if after_kept else NEW
    # (One expression, no call per path: a history's hundreds of texts.)
    return [(NEW if len(path) > 1 and type(path[1]) is int and path[1] >= count else BEFORE)
            if path[0] == array else
            (after if get(path[1], -1) >= at else BEFORE) if path[0] == KEY_NAME and len(path) > 1 else
            (after if get(path[0], -1) > at else BEFORE)
            for path in paths]


def before_findings(states: list[int], paths: list[tuple], found_before: dict) -> list:
    """Each old text's findings from the body before (by its path); () for a new one."""
    get = found_before.get
    return [() if state == NEW else get(path, ()) for state, path in zip(states, paths)]


def states_after_redaction(states: list[int], chosen: list[int] | None, paths: list[tuple],
                           found: list, found_before: dict) -> list[int]:
    """`states` once a rule redacted: an old text it redacted otherwise than in the body
    before (a value cut across it and a new text) now reads otherwise than the next rules
    read it then, and is NEW to them; the others read as they did."""
    states = list(states)
    get = found_before.get
    for position, findings in enumerate(found):
        index = position if chosen is None else chosen[position]
        if states[index] != NEW and tuple(findings) != get(paths[position], ()):
            states[index] = NEW
    return states


def grown_items(grown, body: dict) -> set | None:
    """An empty set of the redacted items to come, for a grown body (resent_values.Grown)
    whose array's layout is known; else None: the body is written again whole."""
    if grown is None or grown.spans is None or grown.key not in grown.spans:
        return None
    items = body.get(grown.key)
    return set() if type(items) is list and len(items) == len(grown.spans[grown.key][1]) else None


def redacted_items(items: set, array: str, paths: list[tuple], found: list | None) -> set | None:
    """`items` with those of `array` a rule's findings (by text, at `paths`) redacted; None
    when one lies elsewhere in the body."""
    if found is None:
        return None
    for path, findings in zip(paths, found):
        if findings:
            if path[0] != array or len(path) < 2 or type(path[1]) is not int:
                return None
            items.add(path[1])
    return items


class Reach:
    """The slots of a grown body a rule reading it as grown needs, for one `states`: the
    old ones with a finding in the body before (they get it, and its redaction, again),
    and those from where the change's reach begins (known_runs.reach_start); `slots` is
    None when that is all of them. The others are old, clean and out of reach: a read of
    every slot gives them nothing. Also, for the rules scoped by `where`, their parts."""

    __slots__ = ("states", "slots", "_parts", "_scoped")

    def __init__(self, states: list[int], texts: list[str], paths: list[tuple], found_before: tuple,
                 resent: bool) -> None:
        self.states = states
        found = set().union(*(by_rule for by_rule in found_before if by_rule))
        start = reach_start(states, texts, (lambda index: paths[index] in found) if found else None, resent)
        self.slots: list[int] | None = None if start == 0 else \
            [index for index in range(start) if paths[index] in found] + list(range(start, len(texts)))
        self._parts: list[str] | None = None
        self._scoped: dict = {}

    def scoped(self, call: Call, where: frozenset, paths: list[tuple]) -> list[int]:
        """The slots, of those within reach, that lie in the parts `where` names."""
        chosen = self._scoped.get(where)
        if chosen is None:
            if self._parts is None:
                self._parts = call.codec.request_parts(call.body, [paths[index] for index in self.slots])
            chosen = self._scoped[where] = [index for index, part in zip(self.slots, self._parts) if part in where]
        return chosen
