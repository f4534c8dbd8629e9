"""A run for a call that names none (stages/runs/limits.py's RecogniseRun asks here when
no header or body field named one).

- A Responses call that continues a stored response (`previous_response_id`; the codec
  says which: `Codec.continued_response`) belongs to the run of the call that made that
  response: the response's owner record (stages/stored_responses.py) keeps the run with
  its key. Same key only: another key's response joins nothing (and is refused 404 by
  StoredResponses). A chain whose first response had no run is a run of its own from its
  first continuation, named by the response it continued.
- An agent that sends nothing per run (Gemini CLI, Qwen Code): a run is inferred,
  conservatively, for a call that offers tools (an agent's; a plain chat call is never
  inferred into a run, and pays nothing here) from the same key, the same system prompt
  and first user turn, and a conversation that grows: the new call's history extends the
  last one's (longer, and the turn where the last one ended is the same: the same request
  sent again, a retry or a batch of one prompt, is not growth and starts a run). The
  start (key, system prompt, first user turn) is digested to name a store record holding
  the run, the history's length and a digest of its last turn. In the store, not per
  worker: an agent's calls land on any worker and replica, and a run split across them
  would defeat its limits; one store read and one write per such call. A new first user
  turn, or a history that does not extend the last one, is a new run. The store bounds
  the memory (each record expires with the run's ttl)."""

from __future__ import annotations

import hashlib
import time

import orjson

from ...pipeline.call import Call
from ...runs.identity import Run, client_of, display_name, run_id
from ...store import maybe_await
from ..stored_responses import continued_owner

CHAIN_SOURCE = "previous_response_id"
INFERRED_SOURCE = "inferred"
INFERRED_KIND = "run_inferred"          # store record: a conversation's start -> its run


def _digest(material: bytes) -> str:
    return hashlib.blake2b(material, digest_size=12).hexdigest()


_SAMPLE = 4096


def _start_digest(key_id: str, head: bytes) -> str:
    """The conversation's start named: its length and both ends (an agent's system prompt
    runs to 100 KB, whose whole digest would cost ~50-100 µs a call; a start differing
    only in its middle, same length, with the same first user turn, is taken as the same:
    the run still joins only a history that extends the last one)."""
    return _digest(key_id.encode("utf-8", "surrogateescape") + b"\0" + _sample(head))


def _sample(material: bytes) -> bytes:
    if len(material) <= 2 * _SAMPLE:
        return material
    return str(len(material)).encode() + b"\0" + material[:_SAMPLE] + material[-_SAMPLE:]


def _turn_digest(turn: object) -> str:
    """A turn named by its length and both ends (a tool result may be 100 KB)."""
    try:
        return _digest(_sample(orjson.dumps(turn)))
    except TypeError:
        return ""


async def chained_run(store, call: Call) -> Run | None:
    """The run of the stored response this call continues, if it is the caller's."""
    previous = call.codec.continued_response(call.body)
    if previous is None or store is None:
        return None
    owner = await continued_owner(store, call, previous)
    if owner.get("key") != call.key.id:
        return None
    client = client_of(call.headers).name
    if owner.get("run"):
        return Run(str(owner["run"])[:24], str(owner.get("run_name", ""))[:80], CHAIN_SOURCE, client)
    return Run(run_id(call.key.id, "response:" + previous), display_name(previous), CHAIN_SOURCE, client)


async def inferred_run(store, call: Call, ttl_seconds: float) -> Run | None:
    """The run a call of an agent that names none is inferred to belong to (module doc)."""
    body = call.body
    if store is None or not call.codec.tool_names(body):
        return None
    start = call.codec.conversation_start(body)
    if start is None:
        return None
    head, history = start
    key_id = call.key.id
    record = _start_digest(key_id, head)
    found = await maybe_await(store.get_record(INFERRED_KIND, record))
    run = None
    if found:
        try:
            last = orjson.loads(found)
            turns = int(last["turns"])
            if 0 < turns < len(history) and _turn_digest(history[turns - 1]) == last["tail"]:
                run = str(last["run"])[:24]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            run = None
    if run is None:                     # a new conversation (or one that does not extend the last)
        run = run_id(key_id, f"inferred:{record}:{call.request_id}:{time.time()}")
    await maybe_await(store.put_record(INFERRED_KIND, record, orjson.dumps(
        {"run": run, "turns": len(history), "tail": _turn_digest(history[-1]) if history else ""}).decode(),
        time.time() + ttl_seconds))
    return Run(run, "inferred-" + run[:8], INFERRED_SOURCE, client_of(call.headers).name, True)
