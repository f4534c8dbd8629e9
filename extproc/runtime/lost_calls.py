"""What a worker killed outright left behind: a log line for each call it had in flight,
and its spend and allotments brought to the store in its name (store/journal.py,
store/live_journal.py).

The supervisor takes a dead worker's journal as soon as it sees the death (in a thread:
its loop keeps its 50 ms tick); the workers' own scan (every 10 s) takes any it could
not write (the store down), and any left by a gateway that stopped without a supervisor.
The journal's lock decides who takes it, so each line is written once and the spend
added once.

A lost call's line says the gateway failed it (`outcome: error`, `error_code:
gateway_error`, `worker_lost: true`): Envoy answered its caller 500, or cut its stream
where it stood; a call whose answer was out when the worker died (in its bookkeeping)
keeps the status and outcome its caller got. Its line charges what the store holds of
it: its usage and cost once its settle and meters were done (the worker died before its
own line left), else nothing (its settle died with the worker; its reservation is freed
with the worker's allotment).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import orjson

from ..observability.settings import OVERFLOW
from ..stages.accounting.in_flight import MODEL_LABEL
from ..store import open_store, state_dir
from ..store.base import maybe_await
from ..store.journal import Journal, gone_holders, store_digest
from ..store.limits import StoreSettings
from ..store.pending import write_orphans

log = logging.getLogger("extproc.lost_calls")

# A call the worker had not charged when it died: its settle died with it.
_NOTHING = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0,
            "usage_estimated": False, "cost_usd": 0.0}


def log_lost_calls(calls: list[tuple[dict, float]]) -> None:
    """One JSON line per call on the service's stdout (descriptor 1, the workers' too),
    counted in gateway_requests_total and gateway_call_outcomes_total; a call charged
    before the death, its tokens and cost too, as its worker would have counted them
    (stages/accounting/record.py), so the metrics' spend is the store's."""
    from ..observability import metrics     # here: after the supervisor set its multiprocess folder
    now = time.time()
    lines = []
    for identity, started in calls:
        model = identity.pop(MODEL_LABEL, OVERFLOW)
        # Its answer out (the worker died in its bookkeeping): what the caller got; else
        # Envoy's 500 (a stream under way was cut where it stood).
        status, outcome = identity.pop("answered", None) or (500, "error")
        charged = identity.pop("charged", None) or _NOTHING
        record = {"ts": now, **identity, "status": status, "outcome": outcome,
                  "error_code": "gateway_error" if outcome == "error" else None, **charged,
                  "latency_ms": round((now - started) * 1000, 3), "ttft_ms": None, "attempts": 1,
                  "worker_lost": True}
        record["cost_usd"] = round(record["cost_usd"], 8)
        record.setdefault("config_version", "")
        lines.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        metrics.child(metrics.requests, model, record.get("backend") or "", record.get("team") or "",
                      str(status)).inc()
        metrics.child(metrics.call_outcomes, model, outcome).inc()
        if charged is not _NOTHING and model:
            _count_spend(metrics, record, model)
    if lines:
        os.write(1, b"".join(lines))
        log.warning("%d calls were in flight on a worker that died: logged from its journal", len(lines))


def _count_spend(metrics, record: dict, model: str) -> None:
    team = record.get("team") or ""
    served = record.get("served_model") if model != OVERFLOW and record.get("served_model") else model
    if record["input_tokens"] or record["output_tokens"]:
        metrics.child(metrics.token_usage, "input", model, served, team).observe(record["input_tokens"])
        metrics.child(metrics.token_usage, "output", model, served, team).observe(record["output_tokens"])
    if record["usage_estimated"]:
        metrics.child(metrics.usage_estimated, model).inc()
    if record["cost_usd"]:
        metrics.child(metrics.cost_usd, model, team).inc(record["cost_usd"])


def take_dead_workers_journals(settings: StoreSettings) -> threading.Thread | None:
    """In a thread: logs the calls of every dead worker's journal of this store and writes
    its spend (its allotments handed back). None without a state directory."""
    directory = state_dir(settings)
    if directory is None:
        return None
    thread = threading.Thread(target=lambda: asyncio.run(_take(settings, directory)),
                              name="dead-worker-journals", daemon=True)
    thread.start()
    return thread


async def _take(settings: StoreSettings, directory: str) -> None:
    orphans = gone_holders(directory, store_digest(settings.url or settings.path or ""), set())
    if not orphans:
        return
    store = open_store(settings)
    try:
        await write_orphans(orphans, store, settings.lease_seconds, log_lost_calls)
    except Exception:                  # the workers' own scan tries again
        log.exception("a dead worker's journal could not be written")
    finally:
        for orphan in orphans:         # (not written: the store down) for a worker's scan
            Journal.let_go(orphan)
        await maybe_await(store.close())
