"""A session cap's window starts at the session's first call and lasts `ttl_s`: the start
is one store record every worker agrees on (SQLite and a real redis-server), and a call
after the window starts a fresh one."""

from __future__ import annotations

import asyncio
import time


from extproc.store.caps import CapSettings, SessionCap, session_charge
from extproc.store.limits import Limit, StoreSettings
from extproc.stages.budget.caps import SpendCaps

CAP = SessionCap(header="x-gateway-session", ttl_s=1,
                 limit=Limit(name="session", scope="session", match=None, kind="usd", limit=1.0, window=None))


async def resolved(result):
    return await result if asyncio.iscoroutine(result) else result


def _caps(store) -> SpendCaps:
    settings = StoreSettings(kind="sqlite", path=None, url=None, fail_mode="closed", lease_seconds=60,
                             default_output_tokens=100)
    return SpendCaps(store, CapSettings(session=CAP), settings)


def test_the_first_record_wins_and_every_caller_gets_it(open_store):
    async def scenario():
        store = await open_store()
        now = time.time()
        first = await resolved(store.first_record("session_start", "run-1", repr(now), now + 60))
        later = await resolved(store.first_record("session_start", "run-1", repr(now + 5), now + 65))
        other = await resolved(store.first_record("session_start", "run-2", repr(now + 5), now + 65))
        return now, first, later, other

    now, first, later, other = asyncio.run(scenario())
    assert float(first) == float(later) == now and float(other) == now + 5


def test_a_sessions_window_starts_at_its_first_call_and_a_later_call_starts_a_fresh_one(open_store):
    async def scenario():
        store = await open_store()
        caps, other_worker = _caps(store), _caps(store)
        begun = time.time()
        start = await caps._window_start("run-42", begun)
        # Another worker, a moment later, counts in the same window.
        same = await other_worker._window_start("run-42", begun + 0.5)
        await asyncio.sleep(CAP.ttl_s + 0.1)          # the record outlives no window
        fresh = await other_worker._window_start("run-42", time.time())
        return begun, start, same, fresh

    begun, start, same, fresh = asyncio.run(scenario())
    assert start == same == begun                     # not aligned to the epoch: the first call's time
    assert fresh >= begun + CAP.ttl_s
    first, later = session_charge(CAP, "run-42", 0.1, start), session_charge(CAP, "run-42", 0.1, fresh)
    assert first.window_end == begun + CAP.ttl_s and first.counter != later.counter
