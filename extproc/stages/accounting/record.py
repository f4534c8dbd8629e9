"""The end of every call: one JSON log line and the metrics. Runs last."""

from __future__ import annotations

import time

import orjson

from ...observability import metrics
from ...observability.settings import OVERFLOW, BoundedLabel
from ...pipeline.call import Call
from ...translate import Notes
from ...pipeline.stage import Stage
from ..route import attempt_notes
from .cost import charged_cost
from .log_lines import LogLines

# What the log line keeps of a text the caller chose (a path, a model name): a 1 MB model
# name must not make a 1 MB log line.
MAX_LOGGED_CHARS = 256


class Record(Stage):
    name = "record"
    reads = frozenset({"attempts", "backend", "body", "ended_at", "endpoint", "error_code", "first_byte_at",
                       "headers", "key", "log_fields", "message_started", "method", "model", "model_name",
                       "outcome", "path", "query", "request_id", "service_seconds", "started", "status", "stream",
                       "tags", "translation", "usage", "verdicts"})
    writes = frozenset({"notes"})

    def __init__(self, out=None, calls=None, lines: LogLines | None = None) -> None:
        # The lines leave together at the end of the loop's turn (log_lines.py).
        self.lines = lines or LogLines(out)
        # The console's recent calls (store/calls.py): the record joins a bounded list in
        # memory, written to the store in batches off the call's path.
        self._calls = calls
        self._tag_values = BoundedLabel()
        self._keys = BoundedLabel()
        self._caller_models = BoundedLabel()
        self._series: dict[tuple, _Series] = {}

    def done(self, call: Call) -> None:
        ended = call.ended_at or time.perf_counter()
        latency = ended - call.started
        model = call.model.name if call.model else ""
        backend = call.backend.name if call.backend else ""
        status = str(call.status) if call.status else call.outcome
        usage = call.usage
        cost = charged_cost(call)
        ttft = (call.first_byte_at - call.started) if call.first_byte_at else None
        service = call.service_seconds + (
            time.perf_counter() - call.message_started if call.message_started else 0.0)

        record = {
            "ts": time.time(),
            "request_id": call.request_id,
            "key_id": call.key.id if call.key else None,
            "user": call.key.user if call.key else None,
            "team": call.key.team if call.key else None,
            "method": call.method,
            "path": call.path[:MAX_LOGGED_CHARS],
            "model": call.model_name[:MAX_LOGGED_CHARS] or None,     # as the caller wrote it: bounded
            "served_model": call.backend.model if call.backend else None,
            "backend": backend or None,
            "status": call.status,
            "outcome": call.outcome,
            "error_code": call.error_code,
            "stream": call.stream,
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cached_tokens": usage.cached_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "usage_estimated": usage.estimated if usage else False,
            "cost_usd": round(cost, 8),
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
            "attempts": call.attempts,
            "config_version": call.config.version,
        }
        record["service_ms"] = round(service * 1000, 3)
        if call.endpoint is not None:
            record["api"] = call.dialect
            if call.translation is not None:
                record["translated_to"] = call.translation.provider
        notes = call.notes
        if call.translation is not None and call.model.is_virtual and call.body is not None:
            notes = _with_attempt_notes(call, notes)
        if notes is not None:            # what a translation left out or filled in (translate/)
            if notes.dropped:
                record["dropped"] = notes.dropped
            if notes.defaulted:
                record["defaulted"] = notes.defaulted
        if call.tags:
            record["tags"] = call.tags
        if call.verdicts:
            record["guardrails"] = call.verdicts
        record.update(call.log_fields)
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        self.lines.write(line)
        if self._calls is not None:
            self._calls.add(record, line)

        team = call.team
        model = self._model_label(call, model)
        endpoint = call.endpoint.kind if call.endpoint else "unknown"
        served = call.backend.model if call.backend and model != OVERFLOW else model
        key = (model, backend, team, status, call.outcome, endpoint, served)
        series = self._series.get(key) or self._series_of(key)
        series.requests.inc()
        series.outcomes.inc()
        series.service.observe(service)
        self._labelled_series(call, model, status, usage, cost)
        if call.endpoint is not None and not call.codec.answered_here:
            (series.duration or series.made("duration")).observe(latency)
        if call.attempts > 1:
            (series.failovers or series.made("failovers")).inc()
        if ttft is not None:
            (series.first_token or series.made("first_token")).observe(ttft)
        if usage is not None and model:
            (series.input_tokens or series.made("input_tokens")).observe(usage.input_tokens)
            (series.output_tokens or series.made("output_tokens")).observe(usage.output_tokens)
            if usage.estimated:
                (series.estimated or series.made("estimated")).inc()
            if cost:
                (series.cost or series.made("cost")).inc(cost)

    def _series_of(self, key: tuple) -> _Series:
        if len(self._series) >= MAX_SERIES_KEPT:        # (labels are bounded; reloads change them)
            self._series.clear()
        series = self._series[key] = _Series(*key)
        return series

    def _model_label(self, call: Call, model: str) -> str:
        """The model as a metric label: a model of the config's `models:` by its name; a
        "<provider>/<model>" name the caller chose (a provider's `models: "*"`) counted
        among at most `max_model_values` distinct ones, then OVERFLOW, as tags and keys are."""
        if not model or model in call.config.models:
            return model
        return self._caller_models(model, call.config.observability.max_model_values)

    def _labelled_series(self, call: Call, model: str, status: str, usage, cost: float = 0.0) -> None:
        """Opt-in series with operator-chosen labels, each capped (see observability.py)."""
        settings = call.config.observability
        tags = call.tags
        if tags and settings.tag_labels:
            for name in settings.tag_labels.intersection(tags):
                value = self._tag_values(f"{name}={tags[name]}", settings.max_tag_values)
                value = value.split("=", 1)[1] if value != OVERFLOW else OVERFLOW
                metrics.child(metrics.tagged_requests, name, value, model, status).inc()
                if cost:
                    metrics.child(metrics.tagged_cost_usd, name, value, model).inc(cost)
        if settings.per_key_metrics and call.key is not None:
            key_id = self._keys(call.key.id, settings.max_key_series)
            user = call.key.user if key_id != OVERFLOW else OVERFLOW
            metrics.child(metrics.key_requests, key_id, user, model, status).inc()
            if usage is not None:
                metrics.child(metrics.key_tokens, key_id, "input").inc(usage.input_tokens)
                metrics.child(metrics.key_tokens, key_id, "output").inc(usage.output_tokens)


# The combinations of labels whose metric children a log line's stage keeps together.
MAX_SERIES_KEPT = 4096


class _Series:
    """The metric children the calls of one combination of model, backend, team, status,
    outcome, endpoint and served model update: found with one look-up a call, where each
    was looked up by its own labels (~8 a call). Those a call may not update are made at
    their first update, as metrics.child makes them: a series is listed once it counted."""
    __slots__ = ("labels", "requests", "outcomes", "service", "duration", "failovers", "first_token",
                 "input_tokens", "output_tokens", "estimated", "cost")

    def __init__(self, model: str, backend: str, team: str, status: str, outcome: str, endpoint: str,
                 served: str) -> None:
        self.labels = (model, backend, team, status, served)
        self.requests = metrics.child(metrics.requests, model, backend, team, status)
        self.outcomes = metrics.child(metrics.call_outcomes, model, outcome)
        self.service = metrics.child(metrics.extproc_request, endpoint)
        self.duration = self.failovers = self.first_token = self.input_tokens = self.output_tokens = \
            self.estimated = self.cost = None

    def made(self, name: str):
        """The child `name` stands for, made now."""
        model, backend, team, status, served = self.labels
        family, labels = {
            "duration": (metrics.request_duration, (model, backend, status)),
            "failovers": (metrics.failovers, (model, backend)),
            "first_token": (metrics.time_to_first_token, (model, backend)),
            "input_tokens": (metrics.token_usage, ("input", model, served, team)),
            "output_tokens": (metrics.token_usage, ("output", model, served, team)),
            "estimated": (metrics.usage_estimated, (model,)),
            "cost": (metrics.cost_usd, (model, team)),
        }[name]
        made = metrics.child(family, *labels)
        setattr(self, name, made)
        return made


def _with_attempt_notes(call: Call, notes: Notes | None) -> Notes:
    """The notes of the translated attempt that answered, then those of its answer."""
    made = attempt_notes(call, call.backend)
    if notes is not None:
        made.dropped.extend(n for n in notes.dropped if n not in made.dropped)
        made.defaulted.extend(n for n in notes.defaulted if n not in made.defaulted)
    return made
