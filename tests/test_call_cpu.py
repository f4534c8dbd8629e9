"""The per-call savings keep behaviour: a long body remembered as sound is found again by
its length and ends, but only the same bytes skip the checks; the call's log line is
written out at the end of the event loop's turn, one write for the calls that ended in it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from types import SimpleNamespace

import orjson
import pytest

from extproc.api import resent_values
from extproc.api.openai import ENDPOINTS
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.pipeline.errors import GatewayError
from extproc.stages import resolve
from extproc.stages.accounting.in_flight import CallsInFlight, InFlightSlot
from extproc.stages.accounting.log_lines import LogLines
from extproc.stages.accounting.record import Record
from extproc.stages.resolve import ParseRequest


def _body(middle: str) -> bytes:
    turns = [{"role": "user", "content": f"turn {i} " + "words of a resent history " * 40} for i in range(40)]
    raw = orjson.dumps({"model": "gpt-4o-mini", "messages": turns}).decode()
    # The middle turn's object, swapped for `middle`: the same length and ends either way.
    anchor = '{"role":"user","content":"turn 20 '
    at = raw.index(anchor)
    return (raw[:at] + middle + raw[at + len(anchor):]).encode()


def _parse(stage: ParseRequest, raw: bytes) -> Call:
    call = Call(None)
    call.raw_body, call.endpoint = raw, ENDPOINTS["/v1/chat/completions"]
    call.key = SimpleNamespace(id="key-a", team="team-a")
    stage.request_body(call)
    return call


def test_a_body_with_the_same_length_and_ends_is_checked_again():
    sound = _body('{"role":"user","content":"turn 20 ')
    repeated = _body('{"role":"user","role":"tool","x":"')        # a repeated key in the middle
    assert len(sound) == len(repeated) >= resent_values.MIN_BODY_BYTES and sound != repeated
    assert sound[:64] == repeated[:64] and sound[-64:] == repeated[-64:]
    stage = ParseRequest()
    for _ in range(2):
        assert (resolve.SOUND, "chat") in _parse(stage, sound).body_facts
    for _ in range(3):
        with pytest.raises(GatewayError) as refused:
            _parse(stage, repeated)
        assert refused.value.status == 400 and "repeats the key 'role'" in refused.value.message
    _parse(stage, sound)                        # the sound one still passes, found again


QUICKSTART = load_config(str(Path(__file__).resolve().parent.parent / "config" / "quickstart.yaml"))


class _Out(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


def test_log_lines_of_one_loop_turn_go_out_in_one_flush():
    out = _Out()
    record = Record(out=out)

    async def calls() -> None:
        for _ in range(3):
            record.done(Call(QUICKSTART))
        assert out.flushes == 0                  # not yet: the turn has not ended
        await asyncio.sleep(0)
        assert out.flushes == 1
        record.done(Call(QUICKSTART))
        await asyncio.sleep(0)
        assert out.flushes == 2

    asyncio.run(calls())
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(orjson.loads(line)["outcome"] for line in lines)


def test_a_calls_place_in_the_live_journal_goes_only_once_its_line_has_left():
    """A worker killed between the two would leave a call neither its line nor the one the
    supervisor writes from the journal (runtime/lost_calls.py)."""
    out = _Out()
    lines = LogLines(out)
    ended: list[tuple[int, int]] = []        # (slot, lines out when it went)
    store = SimpleNamespace(live=SimpleNamespace(
        call_charged=lambda slot, usage, cost: None,
        call_ended=lambda slot: ended.append((slot, out.getvalue().count(b"\n")))))
    record, in_flight = Record(lines=lines), CallsInFlight(store, lines)

    async def calls() -> None:
        for slot in range(3):
            call = Call(QUICKSTART)
            call.own(InFlightSlot).slot = slot
            record.done(call)
            in_flight.done(call)
        assert ended == [] and out.getvalue() == b""        # the lines still in the worker: the slots kept
        await asyncio.sleep(0)
        assert ended == [(0, 3), (1, 3), (2, 3)] and out.flushes == 1

    asyncio.run(calls())
    call = Call(QUICKSTART)                  # without a loop: the line leaves at once, then the slot
    call.own(InFlightSlot).slot = 7
    record.done(call)
    in_flight.done(call)
    assert ended[-1] == (7, 4)


def test_without_a_loop_the_line_goes_out_at_once():
    out = _Out()
    Record(out=out).done(Call(QUICKSTART))
    assert out.flushes == 1 and out.getvalue().endswith(b"\n")


def test_a_meter_names_its_counters_as_it_would_afresh_capped_values_and_the_hour_included():
    import dataclasses
    import random
    from types import SimpleNamespace as NS

    from extproc.stages.budget.meter import Meter
    from extproc.store.meters import meter_combinations, meter_counters

    metering = dataclasses.replace(QUICKSTART.metering, max_values_per_dimension=3)
    assert any(d.startswith("tag:") for s in metering.sets for d in s.dimensions)
    remembering, fresh = Meter(None, metering), Meter(None, metering)
    rng = random.Random(7)
    for _ in range(400):
        who = rng.randrange(6)
        call = NS(key=NS(id=f"k{who}", user=f"u{who % 4}", team=f"t{who % 2}") if who else None,
                  model=NS(name=rng.choice(["gpt-4o-mini", "claude", "a;b=c"])), backend=NS(name="mock"),
                  cache=None if rng.random() < 0.5 else NS(result=rng.choice(["hit", "miss"])),
                  tags={"agent": rng.choice(["a", "b", "c", "d", "e"]), "task": rng.choice(["x", "y"])})
        # Calls an hour apart name their own hour's counters; within the hour the kept ones.
        now = 1_764_000_000.0 + 3600 * rng.randrange(3) + rng.random() * 3600
        assert remembering._counters_of(call, now) == meter_counters(
            metering.sets, meter_combinations(metering.sets, fresh.values(call)), now)


def test_a_request_id_is_a_random_version_4_uuid():
    import uuid

    from extproc.stages.admission import new_request_id

    made = [new_request_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # Every other bit is random: each of the 122 takes both values across the ids.
    ones = [0] * 128
    for text in made:
        bits = uuid.UUID(text).int
        for i in range(128):
            ones[i] += bits >> i & 1
    fixed = {i for i in range(128) if ones[i] in (0, len(made))}
    assert fixed == {127 - 48, 127 - 49, 127 - 50, 127 - 51, 127 - 64, 127 - 65}, sorted(fixed)
