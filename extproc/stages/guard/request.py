"""Guardrails on requests: every message and role, every part, tool calls, both APIs.

Runs before budgets (a blocked request reserves nothing) and before routing (a
redacted body is what gets serialized and sent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from operator import itemgetter
from typing import Callable

from ...api.grown_bodies import spliced
from ...dialects.request_parts import TOOL_RESULTS
from ...guardrails import code_aware, redact
from ...guardrails.config import Guardrail
from ...guardrails.embedded_text import UnreadableText
from ...guardrails.joined import Conversation, find_in_texts
from ...guardrails.known import KNOWN, Lookup, TextDigests
from ...guardrails.walk import KeyText, Renames, TooDeep, request_texts
from ...observability import metrics
from ...pipeline.call import BYTES_WRITTEN, Call
from ...pipeline.errors import GatewayError
from ...transport.eager import task_needed
from ...pipeline.stage import Stage
from .grown import (SAME_BYTES, Reach, before_findings, by_path, grown_items, grown_states, keep_read,
                    read_before, redacted_items, states_after_redaction)
from .shared_findings import LOOKUP_CHARS, SharedFindings

log = logging.getLogger("extproc.guardrails")

# Containers a slot's text is read from as it is (a message, a part, a list of texts, the
# holders that rename keys): a request whose slots are all in these has no unreadable one.
_READABLE_KINDS = frozenset({dict, list, Renames, KeyText})

# New text past this, scored by a classifier, is scored in a thread: NumPy leaves the GIL
# while it adds weights, so the worker's other calls go on meanwhile (a 400 KB tool result
# takes ~30 ms to score; a pure-Python loop beside it ran at full speed, measured).
OFF_LOOP_CHARS = 32_000


async def score_apart(lookup: Lookup, detector) -> None:
    """Score a request's new texts in a thread when there is much of it; the findings are
    kept in `lookup` (and remembered), so the check that follows reads none again."""
    unread = lookup.unread()
    texts = [lookup.texts[i] for i in unread]
    if sum(map(len, texts)) >= OFF_LOOP_CHARS:
        await task_needed()
        lookup.take(unread, await asyncio.to_thread(lambda: [detector.find(text) for text in texts]))


def content_blocked(guardrail: str, direction: str = "request") -> GatewayError:
    return GatewayError(400, "content_blocked",
                        f"The {direction} was blocked by the guardrail '{guardrail}'.")


class _Verdict(dict):
    """A verdict with nothing found, the same for every call that gets it: made once and
    shared by their log lines (orjson writes it as the dict it is), so it refuses changes."""
    __slots__ = ()

    def _refuse(self, *_args, **_kwargs):
        raise TypeError("a shared verdict is not changed")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = setdefault = clear = _refuse


# (guardrail, direction, verdict) -> (its shared entry, its counter's inc): a call records
# a verdict per rule (four in the quickstart), where each made a dict and looked up its
# counter (~1.5% of a short call's instructions).
_VERDICTS: dict[tuple[str, str, str], tuple[_Verdict, Callable[[], None]]] = {}


def record_verdict(call: Call, guardrail: Guardrail, direction: str, verdict: str,
                   found: list[str] | None = None, where: list[str] | None = None) -> None:
    """Every verdict goes to the metrics and to the request's log line; with what a text rule
    found (the kinds: `email`, `card`..., never the text) and in which parts of the request."""
    if found or where:
        metrics.child(metrics.guardrail_verdicts, guardrail.name, verdict).inc()
        entry = {"guardrail": guardrail.name, "direction": direction, "verdict": verdict}
        if found:
            entry["found"] = found
        if where:
            entry["where"] = where
        call.verdicts.append(entry)
        return
    held = _VERDICTS.get((guardrail.name, direction, verdict))
    if held is None:
        if len(_VERDICTS) >= 4096:          # (names come from configs: bounded, reloads aside)
            _VERDICTS.clear()
        held = _VERDICTS[(guardrail.name, direction, verdict)] = (
            _Verdict(guardrail=guardrail.name, direction=direction, verdict=verdict),
            metrics.child(metrics.guardrail_verdicts, guardrail.name, verdict).inc)
    held[1]()
    call.verdicts.append(held[0])


def _texts(slots: list) -> list[str]:
    """Each slot's text as it stands (a rule before may have redacted it)."""
    return [container[key] for container, key in slots]


def check_texts(call: Call, guardrail: Guardrail, slots: list, direction: str,
                lookup: Lookup | None = None, part_of=None, found_out: list | None = None) -> bool:
    """Run a text guardrail over slots (container, key), read as one conversation (a value
    split across two of them is found: guardrails/joined.py); redact each piece in place.
    `lookup`: what the guardrail knows of the slots' texts, if the caller looked it up.
    `part_of(i)`: the part of the request slot i lies in, named in the verdict.
    `found_out`: given the findings of each slot, as redacted. True if anything changed."""
    texts = lookup.texts if lookup is not None else _texts(slots)
    if guardrail.per_text:            # scores whole texts (the classifier)
        found = (lookup or Lookup(guardrail.digest, texts)).find_each(guardrail.detector)
    elif guardrail.digest:            # the texts earlier checks read get their findings again
        # A redacting rule's detector finds every value; a blocking one may stop at its first.
        # (code-aware: a blocking rule's first finding may be an author's address in code)
        found = (lookup or Lookup(guardrail.digest, texts)).find(
            guardrail.detector, complete=guardrail.action == "redact" or guardrail.code_aware)
    else:
        found = find_in_texts(guardrail.detector, conversation_of(call, texts))
    if guardrail.code_aware and direction == "request" and any(found):     # answers: as streams read them
        found = [code_aware.kept(text, findings, part_of is not None and part_of(index) == TOOL_RESULTS)
                 if findings else findings for index, (text, findings) in enumerate(zip(texts, found))]
    if found_out is not None:
        found_out.extend(found)
    hits = any(found)
    changed = False
    if hits and guardrail.action == "redact":
        for (container, key), text, findings in zip(slots, texts, found):
            if findings:
                # A slot that cannot take text back (logit_bias: token ids) takes the findings.
                writer = getattr(container, "redact_findings", None)
                if writer is not None:
                    writer(findings)
                else:
                    container[key] = redact(text, findings)
                changed = True
    verdict = "passed" if not hits else {"block": "blocked", "redact": "redacted", "log": "flagged"}[
        guardrail.action]
    kinds = sorted({finding.label.lower() for findings in found for finding in findings}) if hits else None
    places = sorted({part_of(index) for index, findings in enumerate(found) if findings}) \
        if hits and part_of is not None else None
    record_verdict(call, guardrail, direction, verdict, kinds, places)
    if verdict == "blocked":
        raise content_blocked(guardrail.name, direction)
    return changed


class GuardedTexts:
    """The texts the guardrails read, laid out as one conversation."""
    __slots__ = ("conversation",)

    def __init__(self) -> None:
        self.conversation: Conversation | None = None


def conversation_of(call: Call, texts: list[str]) -> Conversation:
    """The texts as one conversation, laid out once for all the request's guardrails
    (again after a redaction, which writes new texts)."""
    held = call.own(GuardedTexts)
    if held.conversation is not None and held.conversation.same_texts(texts):
        return held.conversation
    conversation = held.conversation = Conversation(texts)
    return conversation


async def run_plugin(call: Call, guardrail: Guardrail, slots: list, direction: str) -> bool:
    texts = _texts(slots)
    await task_needed()                      # a gRPC call with a deadline (eager.py)
    verdict, reason, replacements = await guardrail.detector.check(
        direction, texts, model=call.model_name, key_id=call.key.id, team=call.key.team,
        request_id=call.request_id)
    if verdict == "block" and guardrail.action != "log":
        record_verdict(call, guardrail, direction, "blocked")
        raise content_blocked(guardrail.name, direction)
    if verdict == "redact" and guardrail.action == "redact":
        for (container, key), text in zip(slots, replacements):
            container[key] = text
        record_verdict(call, guardrail, direction, "redacted")
        return True
    record_verdict(call, guardrail, direction, "passed" if verdict == "allow" else "flagged")
    return False


def could_not_run(call: Call, guardrail: Guardrail, direction: str, why: str, detail: str = "") -> None:
    """A guardrail that cannot run applies its fail mode, and the record says so."""
    log.warning("guardrail %s could not run (%s); failing %s", guardrail.name, why, guardrail.fail_mode)
    record_verdict(call, guardrail, direction, f"error_fail_{guardrail.fail_mode}")
    if guardrail.fail_mode == "closed":
        reason = f" ({detail})" if detail else " (too large to check)" if "larger" in why else \
            " (too costly to check in time)" if "longer" in why else ""
        raise GatewayError(400, "content_blocked",
                           f"The guardrail '{guardrail.name}' could not check this {direction}"
                           f"{reason}; it fails closed.")


def _passed_before(facts: dict, call: Call, policy: tuple[Guardrail, ...]) -> bool:
    """The body's bytes passed this very policy (the rules of this config) for this model,
    on this endpoint: every rule read them and found nothing (grown.py's READ)."""
    found = read_before(facts, call, policy)
    return found is not None and all(found_by_rule == {} for found_by_rule in found)


class GuardRequest(Stage):
    name = "guard_request"
    reads = frozenset({"body", "body_facts", "body_grown", "endpoint", "key", "model", "model_name", "raw_body",
                       "request_id"})
    writes = frozenset({"body_bytes", "body_changed", "verdicts"})

    def __init__(self, store=None) -> None:
        self.shared = SharedFindings(store)     # findings other workers and replicas made

    async def request_body(self, call: Call) -> None:
        policy = call.config.guardrails.policy_reading(call.key, "request")
        if not policy or call.body is None:
            return
        facts = call.body_facts if not call.body_changed else None
        grown = call.body_grown if facts is not None else None
        if grown is None and facts is not None and _passed_before(facts, call, policy):
            # The same bytes passed this policy (a retry, parallel calls on one history):
            # they pass again, each rule's verdict recorded as it was, without a walk.
            for guardrail in policy:
                record_verdict(call, guardrail, "request", "passed")
            return
        # An agent's next turn, grown from a body this very policy read: its texts (and the
        # seams between them) were all read then; only the new items' texts are read, with
        # the conversation on either side of them, and the old ones get what they had (and
        # their redactions) again (grown.py). So do the same bytes sent again, unread.
        found_before = read_before(grown.facts if grown is not None else facts, call, policy) \
            if facts is not None else None
        kept = None if found_before is None else SAME_BYTES if grown is None else \
            (grown.key, grown.kept, grown.after_kept)
        read, items_changed = await self._check(call, policy, kept, found_before, facts is not None)
        if facts is not None and read is not None:
            keep_read(facts, call, policy, read)
        if items_changed and call.body_changed:
            # Only some items of the history were redacted: they are written into the bytes
            # as sent, where writing the whole body again cost ~1.3 ms at 4 MB.
            call.body_bytes = spliced(call.raw_body, grown.spans[grown.key], call.body[grown.key],
                                      sorted(items_changed))
            call.body_changed = BYTES_WRITTEN

    async def _check(self, call: Call, policy: tuple[Guardrail, ...], kept: tuple[str, int, bool] | None = None,
                     found_before: tuple | None = None, handing_on: bool = False) -> tuple[list | None, set | None]:
        """`handing_on` (a body kept for the calls after it): each rule's findings by path
        (grown.py's READ), or None when what was read cannot be handed on (a plugin, tools
        removed); and the items of a grown body's array the rules redacted, when that is
        all they changed and the body's layout is known (else None)."""
        walked = request_texts(call.endpoint.kind, call.body)
        every_slot = [(container, key) for container, key, _path in walked]
        every_path = [path for _container, _key, path in walked]
        # Where each slot's text lay in the body this one grew from (None: not such a body).
        states = grown_states(call.body, every_path, *kept) if kept is not None else None
        every_text = _texts(every_slot)    # again after a change
        # A payload declared as text that cannot be decoded (guardrails/embedded_text.py),
        # or a value nested past the walk's depth (guardrails/walk.py), is not passed
        # unread: each text guardrail applies its fail mode to it.
        # (Most requests hold none: one pass over the containers' types, in C, says so.)
        unreadable = {index: container for index, (container, _key) in enumerate(every_slot)
                      if isinstance(container, (UnreadableText, TooDeep))} \
            if not _READABLE_KINDS.issuperset(map(type, map(itemgetter(0), every_slot))) else {}
        parts = None            # each slot's part of the request, for the rules scoped by `where`
        tools = None            # each slot's tool (its result's), for the rules scoped to some tools
        chosen_for: dict = {}   # the slots of each scope (`where`, tools) rules read
        # A rule reading a grown body as grown reads the slots its change can reach, and the
        # old ones it found something in (grown.py's Reach): an agent's history has hundreds
        # of texts, and each pass over them all cost more than the new turn's read.
        reach: Reach | None = None
        bound = call.config.guardrails.max_scan_chars
        total = sum(map(len, every_text))
        deadline = time.perf_counter() + call.config.guardrails.max_scan_ms / 1000
        digests = TextDigests()
        read: list = [None] * len(policy)          # what each rule found, by path (grown.py)
        items_changed = grown_items(call.body_grown, call.body) if handing_on else None
        for rule, guardrail in enumerate(policy):
            missing, lookup, slots, paths, chosen = None, None, every_slot, every_path, None
            before = found_before[rule] if found_before is not None else None
            near = None
            if states is not None and before is not None and guardrail.digest and guardrail.tool_names is None \
                    and KNOWN.enabled:
                if reach is None or reach.states is not states:      # (again after a redaction)
                    if every_text is None:
                        every_text = _texts(every_slot)
                    reach = Reach(states, every_text, every_path, found_before, kept is SAME_BYTES)
                near = reach.slots
            if near is not None:
                chosen = near if guardrail.where is None else reach.scoped(call, guardrail.where, every_path)
            elif guardrail.where is not None:
                scope = (guardrail.where, guardrail.tool_names)
                chosen = chosen_for.get(scope)
                if chosen is None:
                    if parts is None:
                        parts = call.codec.request_parts(call.body, every_path)
                    chosen = [index for index, part in enumerate(parts) if part in guardrail.where]
                    if guardrail.tool_names is not None:
                        if tools is None:
                            tools = call.codec.tool_result_names(call.body, every_path)
                        chosen = [index for index in chosen
                                  if parts[index] != TOOL_RESULTS or guardrail.reads_tool(tools[index])]
                    chosen_for[scope] = chosen
                if every_slot and len(chosen) == len(every_slot):     # all of them (a chat user's question)
                    chosen = None
            if chosen is not None:
                slots, paths = [every_slot[i] for i in chosen], [every_path[i] for i in chosen]
                if not slots and guardrail.type != "plugin":
                    # Nothing of the parts it reads is in this request (a rule for tool
                    # results, a call with none), or within reach of a grown body's change:
                    # passed, without a lookup or a deadline.
                    record_verdict(call, guardrail, "request", "passed")
                    read[rule] = {}
                    continue
            unread = None               # the first slot it reads that cannot be read
            if unreadable:
                unread = next(iter(unreadable.values())) if chosen is None else \
                    next((unreadable[i] for i in chosen if i in unreadable), None)
            if guardrail.digest:
                # The texts as this guardrail reads them: an earlier one may have redacted some.
                if every_text is None:
                    every_text = _texts(every_slot)
                texts = every_text if chosen is None else [every_text[i] for i in chosen]
                # (A rule scoped to some tools' results reads them by the names their calls
                # give: a new call may name an old result otherwise. It reads as before.)
                read_as_grown = None if states is None or guardrail.tool_names is not None or before is None \
                    else states if chosen is None else [states[i] for i in chosen]
                lookup = Lookup(guardrail.digest, texts, digests=digests, states=read_as_grown,
                                before=before_findings(read_as_grown, paths, before) if read_as_grown and before
                                else None, resent=kept is SAME_BYTES, part=near is not None)
                if total >= LOOKUP_CHARS:
                    missing = await self.shared.fetch(call, lookup)
            # The bound is on what this check must read: text earlier checks read (an
            # agent's history, resent every turn) is known and costs a hash.
            if guardrail.scans_text and total > bound:
                new = lookup.new_chars() if lookup is not None else total
                if new > bound:
                    could_not_run(call, guardrail, "request", "input larger than max_scan_chars",
                                  f"too large to check: {new} characters of new text, above "
                                  f"guardrails.max_scan_chars = {bound}")
                    # (Texts it redacted in the body before are not redacted now: the next
                    # rules read them otherwise than then, and read every text.)
                    states = None if before != {} else states
                    continue
            if guardrail.scans_text and guardrail.type != "plugin" and time.perf_counter() > deadline:
                could_not_run(call, guardrail, "request", "scan took longer than max_scan_ms")
                states = None if before != {} else states
                continue
            if unread is not None and guardrail.scans_text:
                if isinstance(unread, TooDeep):
                    could_not_run(call, guardrail, "request", "a value nested too deep", unread.detail)
                else:
                    could_not_run(call, guardrail, "request", "a text payload that cannot be decoded",
                                  f"the text document at '{unread.field}' cannot be decoded")
            try:
                changed = False
                if guardrail.type == "caps":
                    self._caps(call, guardrail)
                    read[rule] = {} if call.verdicts[-1]["verdict"] == "passed" else None
                elif guardrail.type == "tools":
                    self._tools(call, guardrail)
                    read[rule] = {} if call.verdicts[-1]["verdict"] == "passed" else None
                    if call.verdicts[-1]["verdict"] == "removed":      # texts gone, untracked
                        handing_on, states, items_changed = False, None, None
                elif guardrail.type == "plugin":
                    changed = await run_plugin(call, guardrail, slots, "request")
                    handing_on, items_changed = False, None
                else:
                    if lookup is not None and guardrail.per_text:
                        await score_apart(lookup, guardrail.detector)
                    found: list | None = [] if handing_on or states is not None else None
                    changed = check_texts(
                        call, guardrail, slots, "request", lookup,
                        lambda index, paths=paths: call.codec.request_part(call.body, paths[index]), found)
                    if missing:
                        self.shared.read(call, missing)
                    if found is not None and lookup is not None and unread is None and \
                            call.verdicts[-1]["verdict"] in ("passed", "redacted"):
                        read[rule] = by_path(paths, found)
                    if changed and items_changed is not None:
                        items_changed = redacted_items(items_changed, call.body_grown.key, paths, found)
                    if states is not None and guardrail.action == "redact" and (changed or before != {}):
                        # The next rules read the texts this one redacted: as they read them
                        # in the body before, where this one redacted them alike.
                        states = None if before is None or read[rule] is None else \
                            states_after_redaction(states, chosen, paths, found, before)
                if changed:
                    call.body_changed = True
                    every_text = None           # redacted: the next rules read the new texts
            except GatewayError:
                raise
            except Exception as error:   # noqa: BLE001 - the fail mode decides (plugin down, bug)
                could_not_run(call, guardrail, "request", type(error).__name__)
                read[rule], states, items_changed = None, None, None
        return read if handing_on else None, items_changed

    def done(self, call: Call):
        return self.shared.publish(call)       # after the answer: the client does not wait

    @staticmethod
    def _caps(call: Call, guardrail: Guardrail) -> None:
        caps, body = guardrail.caps, call.body
        over = None
        # The dialect counts its messages (chat messages, Responses input items, Gemini contents).
        if caps.max_messages and call.codec.prompt_texts(body)[1] > caps.max_messages:
            over = f"more than {caps.max_messages} messages"
        requested = call.codec.max_output_tokens(body)
        if caps.max_tokens and requested and requested > caps.max_tokens:
            over = f"max_tokens above {caps.max_tokens}"
        if caps.max_prompt_tokens and call.prompt_tokens() > caps.max_prompt_tokens:
            over = f"prompt longer than {caps.max_prompt_tokens} tokens"
        if over is None:
            record_verdict(call, guardrail, "request", "passed")
            return
        record_verdict(call, guardrail, "request", "blocked" if guardrail.action == "block" else "flagged")
        if guardrail.action == "block":
            raise GatewayError(400, "content_blocked",
                               f"The request was blocked by the guardrail '{guardrail.name}': {over}.")

    @staticmethod
    def _tools(call: Call, guardrail: Guardrail) -> None:
        names = call.codec.tool_names(call.body)
        forbidden = [name for name in names if name not in guardrail.allow]
        if not forbidden:
            record_verdict(call, guardrail, "request", "passed")
            return
        if guardrail.action == "block":
            record_verdict(call, guardrail, "request", "blocked")
            raise GatewayError(400, "content_blocked", f"The request was blocked by the guardrail "
                               f"'{guardrail.name}': tool not allowed.")
        if guardrail.action == "remove":
            call.codec.remove_tools(call.body, forbidden)
            call.body_changed = True
            record_verdict(call, guardrail, "request", "removed")
            return
        record_verdict(call, guardrail, "request", "flagged")
