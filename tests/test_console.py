"""The console's parts without a browser: its config section, signed sessions and CSRF
tokens, the recent calls the workers hand to the store (SQLite and a real Redis) and how
they are read back, and the config page's masking of secrets."""

from __future__ import annotations

import asyncio
import io
import time

import orjson
import pytest
import yaml

from extproc.config.console import parse_console
from extproc.config.filter_config import load_config
from extproc.config.providers import Secret
from extproc.console.auth import Sessions
from extproc.console.config_view import masked_config
from extproc.pipeline.call import Call
from extproc.stages.accounting.record import Record
from extproc.store.calls import CallFilter, CallLog, call_stats, recent_calls
from extproc.store.limits import StoreSettings
from extproc.yamltree import ConfigError, Problems, load_yaml
from gateway_stack import QUICKSTART_CONFIG, quickstart_config


def parse(tmp_path, section: dict, env: dict | None = None, monkeypatch=None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"console": section}))
    problems = Problems(str(path))
    settings = parse_console(load_yaml(str(path), problems).get("console"), strict=True)
    return settings, problems


# --- config ---------------------------------------------------------------------------

def test_the_console_section_is_read_with_its_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("CONSOLE_ADMIN", "a" * 20)
    settings, problems = parse(tmp_path, {"tokens": {"admin": {"env": "CONSOLE_ADMIN"}}})
    assert not problems.lines and not problems.warnings
    assert settings.listen == "127.0.0.1:9466" and settings.calls_kept == 10000
    assert settings.session_seconds == 8 * 3600 and settings.session_secret is None
    assert [(role, source) for role, _, source in settings.tokens] == [("admin", "env:CONSOLE_ADMIN")]
    assert "a" * 20 not in repr(settings)


@pytest.mark.parametrize("section, complaint", [
    ({}, "is required"),
    ({"tokens": {"root": {"value": "x" * 20}}}, "unknown role 'root'"),
    ({"tokens": {"admin": {"value": "short"}}}, "at least 16 characters"),
    ({"tokens": {"admin": {"value": "x" * 20}}, "session_secret": {"value": "too-short"}}, "at least 32"),
    ({"tokens": {"admin": {"value": "x" * 20}}, "listen": "nowhere"}, "HOST:PORT"),
    ({"tokens": {"admin": {"value": "x" * 20}}, "calls": {"keep": -1}}, "must be at least 0"),
    ({"tokens": {"admin": {"value": "x" * 20}}, "colour": "blue"}, "colour"),
])
def test_a_wrong_console_section_is_refused_with_a_clear_problem(tmp_path, section, complaint):
    _, problems = parse(tmp_path, section)
    assert any(complaint in line for line in problems.lines), problems.lines
    assert not any("x" * 20 in line for line in problems.lines)


def test_a_console_beyond_loopback_is_warned_about(tmp_path):
    _, problems = parse(tmp_path, {"tokens": {"admin": {"value": "x" * 20}}, "listen": "0.0.0.0:9466"})
    assert not problems.lines and any("beyond this machine" in line for line in problems.warnings)


@pytest.mark.parametrize("oidc, complaint", [
    ({"provider": "okta"}, "must name one of identity.jwt.providers (demo)"),
    ({"provider": "demo", "client_id": "c", "redirect_url": "https://x.example/elsewhere",
      "roles": {"admin": ["a"]}}, "ending in /login/callback"),
    ({"provider": "demo", "client_id": "c", "redirect_url": "javascript:alert(1)", "roles": {"admin": ["a"]}},
     "must be an http(s) URL"),
    ({"provider": "demo", "client_id": "c", "redirect_url": "https://x.example/login/callback",
      "roles": {"root": ["a"]}}, "unknown role 'root'"),
    ({"provider": "demo", "client_id": "c", "redirect_url": "https://x.example/login/callback"}, "at least one role"),
])
def test_a_wrong_oidc_section_is_refused(tmp_path, oidc, complaint):
    config = quickstart_config()
    config["console"]["oidc"] = oidc
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as refused:
        load_config(str(path), strict_credentials=False)
    assert any(complaint in line for line in refused.value.problems), refused.value.problems


def test_the_quickstart_runs_the_console_with_demo_tokens():
    config = load_config(str(QUICKSTART_CONFIG), strict_credentials=False)
    assert config.console.listen == "127.0.0.1:9466"
    assert {role for role, _, source in config.console.tokens if source == "inline"} == {"admin", "viewer"}


# --- sessions -------------------------------------------------------------------------

def sessions(secret: str | None = None) -> Sessions:
    from extproc.config.console import ConsoleSettings
    return Sessions(ConsoleSettings(
        listen="127.0.0.1:1", tokens=(("admin", Secret("admin-token-0123456789"), "inline"),
                                      ("viewer", Secret("viewer-token-0123456789"), "inline")),
        session_secret=Secret(secret) if secret else None, session_seconds=60, calls_kept=0))


def test_a_token_names_its_role_and_nothing_else_does():
    book = sessions()
    assert book.role_of("admin-token-0123456789") == "admin"
    assert book.role_of(" viewer-token-0123456789\n") == "viewer"
    for wrong in ("", "admin-token-012345678", "admin-token-0123456789x", "ADMIN-TOKEN-0123456789", "\udcff"):
        assert book.role_of(wrong) is None


def test_a_session_cookie_holds_only_what_was_signed():
    book = sessions()
    session, cookie = book.open("dana", "viewer")
    assert book.session(cookie) == session and "viewer-token" not in cookie
    payload, signature = cookie.split(".")
    # A viewer who edits the payload to say admin: the signature no longer matches.
    import base64
    import json
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw["r"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{signature}", f"{payload}.{signature[:-2]}AA", payload, "", "a.b.c", "x" * 5000):
        assert book.session(bad) is None
    assert sessions().session(cookie) is None                # another start, another secret
    book.close(session)
    assert book.session(cookie) is None                      # signed out: a copy of the cookie opens nothing
    assert book.session(cookie, now=time.time() + 61) is None   # expired


def test_a_configured_secret_keeps_sessions_across_restarts_and_csrf_is_per_session():
    first, second = sessions("s" * 40), sessions("s" * 40)
    session, cookie = first.open("dana\x00\n" + "x" * 100, "admin")
    assert second.session(cookie) == session
    assert session.who == "dana" + "x" * 60 and session.may("config")
    token = first.csrf_token(session)
    assert second.csrf_ok(session, token)
    other, _ = first.open("eve", "admin")
    assert not first.csrf_ok(other, token) and not first.csrf_ok(session, "") and not first.csrf_ok(session, None)
    viewer, _ = first.open("val", "viewer")
    assert viewer.may("read") and not viewer.may("keys") and not viewer.may("config")


# --- recent calls ---------------------------------------------------------------------

def a_call(n: int, **fields) -> dict:
    return {"ts": time.time(), "request_id": f"r{n}", "key_id": "k1" if n % 2 else "k2", "user": "u",
            "team": "research" if n % 3 else "support", "model": "gpt-4o-mini", "backend": "mock", "status": 200,
            "outcome": "ok", "input_tokens": 5, "output_tokens": 2, "cost_usd": 0.00001, "latency_ms": float(n),
            "path": "/v1/chat/completions", "method": "POST", "dropped": ["x"], **fields}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    if request.param == "sqlite":
        from extproc.store.sqlite_store import SQLiteStore
        path = str(tmp_path / "budgets.sqlite3")
        SQLiteStore(path).close()                      # the gateway's store makes the file
        return StoreSettings("sqlite", path, None, "closed", 900, 512)
    import redis
    redis.Redis.from_url(redis_url).delete("{llmgw}:calls")
    return StoreSettings("redis", None, redis_url, "closed", 900, 512)


def test_a_model_calls_row_is_its_log_line_as_written(store):
    """Record hands the console's list the line it wrote: the row holds every field of
    it (the path, the service time), not the listed fields written again."""
    out = io.BytesIO()
    log = CallLog()
    call = Call(load_config(QUICKSTART_CONFIG))
    call.request_id, call.status, call.path, call.method = "row-1", 200, "/v1/chat/completions", "POST"
    Record(out=out, calls=log).done(call)

    async def run() -> None:
        await log.flush(store, 10)
        if log._redis is not None:
            await log._redis[1].aclose()
    asyncio.run(run())
    [row] = recent_calls(store, limit=10)
    assert row == orjson.loads(out.getvalue()) and row["path"] == "/v1/chat/completions" and "service_ms" in row


def test_calls_reach_the_store_in_batches_newest_kept_and_filtered(store):
    log = CallLog()

    async def run() -> None:
        for n in range(30):
            log.add(a_call(n))
        await log.flush(store, 25)
        log.add(a_call(30, status=429, error_code="rate_limited"))
        log.add(a_call(31, status=400, guardrails=[{"guardrail": "pii", "direction": "request", "verdict": "blocked"}],
                       tags={"agent": "triage"}))
        log.add(a_call(32, guardrails=[{"guardrail": "pii", "direction": "request", "verdict": "redacted"}]))
        log.add({"ts": time.time(), "kind": "mcp", "request_id": "m1", "key_id": "k1", "profile": "demo",
                 "server": "demo", "method": "tools/call", "tool": "echo", "argument_bytes": 20, "status": 200,
                 "outcome": "ok", "latency_ms": 3.0, "session": "secret-session-id",
                 "guardrails": [{"guardrail": "pii", "direction": "request", "verdict": "redacted"}]})
        await log.flush(store, 25)
        await log.flush(store, 25)               # nothing new: nothing written
        if log._redis is not None:
            await log._redis[1].aclose()
    asyncio.run(run())

    newest = recent_calls(store, limit=100)
    assert [row["request_id"] for row in newest] == [f"r{n}" for n in range(32, 8, -1)]   # the newest 25, MCP's apart
    [mcp] = recent_calls(store, CallFilter(kind="mcp"))
    assert mcp["tool"] == "echo" and mcp["argument_bytes"] == 20 and "session" not in mcp
    assert [r["request_id"] for r in recent_calls(store, CallFilter(verdict="any", kind="*"))] == ["m1", "r32", "r31"]
    assert "dropped" not in newest[0] and "path" not in newest[0]          # only the listed fields
    assert [r["request_id"] for r in recent_calls(store, CallFilter(status="error"))] == ["r31", "r30"]
    assert [r["request_id"] for r in recent_calls(store, CallFilter(status="429"))] == ["r30"]
    assert [r["request_id"] for r in recent_calls(store, CallFilter(verdict="blocked"))] == ["r31"]
    assert [r["request_id"] for r in recent_calls(store, CallFilter(verdict="redacted"))] == ["r32"]
    assert [r["request_id"] for r in recent_calls(store, CallFilter(verdict="redacted", kind="*"))] == ["m1", "r32"]
    assert [r["request_id"] for r in recent_calls(store, CallFilter(tag="agent=triage"))] == ["r31"]
    assert all(r["key_id"] == "k1" for r in recent_calls(store, CallFilter(key_id="k1")))
    assert all(r["team"] == "support" for r in recent_calls(store, CallFilter(team="support")))
    assert len(recent_calls(store, limit=5)) == 5
    stats = call_stats(store, time.time() - 60)
    mock = ("gpt-4o-mini", "mock", False)
    assert stats.calls == {mock: 24} and stats.errors == {mock: 2}
    assert stats.latencies[mock] == [float(n) for n in range(9, 33)]
    assert call_stats(store, time.time() - 60, sample=3).latencies[mock] == [30.0, 31.0, 32.0]
    assert call_stats(store, time.time() + 60).calls == {}


def test_the_overview_tells_cache_hits_from_calls_refused_before_a_backend(store):
    """A call with no backend was answered from the response cache or refused before one:
    the overview's rows tell them apart (never one "-" row for both)."""
    log = CallLog()

    async def run() -> None:
        log.add(a_call(1))
        log.add(a_call(2, backend=None, cache="hit", cost_usd=0.0, latency_ms=0.5))
        log.add(a_call(3, backend=None, cache="hit", cost_usd=0.0, latency_ms=0.7))
        log.add(a_call(4, backend=None, status=401, outcome="refused", error_code="invalid_api_key"))
        log.add(a_call(5, backend=None, cache="miss", status=429, outcome="refused"))
        await log.flush(store, 100)
        if log._redis is not None:
            await log._redis[1].aclose()
    asyncio.run(run())
    stats = call_stats(store, time.time() - 60)
    assert stats.calls == {("gpt-4o-mini", "mock", False): 1, ("gpt-4o-mini", "", True): 2,
                           ("gpt-4o-mini", "", False): 2}
    assert stats.errors.get(("gpt-4o-mini", "", True), 0) == 0 and stats.errors[("gpt-4o-mini", "", False)] == 2
    assert stats.latencies[("gpt-4o-mini", "", True)] == [0.5, 0.7]


def test_keep_zero_writes_nothing_and_an_unwritable_store_loses_only_the_batch(tmp_path):
    log = CallLog()
    settings = StoreSettings("sqlite", str(tmp_path / "s.sqlite3"), None, "closed", 900, 512)

    async def run() -> None:
        log.add(a_call(1))
        await log.flush(settings, 0)
        log.add(a_call(2))
        await log.flush(StoreSettings("sqlite", str(tmp_path / "no" / "such" / "dir.sqlite3"), None, "closed",
                                      900, 512), 10)
    asyncio.run(run())
    assert recent_calls(settings) == [] and not (tmp_path / "s.sqlite3").exists()


# --- the config page ------------------------------------------------------------------

def test_the_config_page_masks_every_secret(tmp_path, monkeypatch):
    config = quickstart_config()
    config["providers"]["openai-like"] = {"url": "https://example.invalid", "api_key": {"value": "sk-live-provider"}}
    config["console"]["session_secret"] = {"value": "s" * 40}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        loaded = load_config(str(path), strict_credentials=False)
    except ConfigError as error:
        pytest.fail("\n".join(error.problems))
    shown = masked_config(loaded)
    for secret in ("sk-demo-alice", "sk-demo-bob", "console-demo-admin-token", "console-demo-viewer-token",
                   "sk-live-provider", "s" * 40, "mock-provider-key"):
        assert secret not in shown
    assert "***" in shown and "console:" in shown and "gpt-4o-mini" in shown


# --- extproc up's banner --------------------------------------------------------------

def test_extproc_up_prints_the_console_and_only_a_demo_token(capsys, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from extproc.runtime.up_cli import _print_banner
    supervisor = SimpleNamespace(worker_count=1, envoy_admin="/tmp/x.sock")
    config = load_config(str(QUICKSTART_CONFIG), strict_credentials=False)
    _print_banner(config, supervisor, "http://127.0.0.1:10000/v1", [])
    shown = capsys.readouterr().out
    assert "Console:                    http://127.0.0.1:9466" in shown
    assert "demo admin token: console-demo-admin-token" in shown

    raw = quickstart_config()
    raw["console"]["tokens"] = {"admin": {"env": "CONSOLE_TOKEN_FOR_TEST"}}
    monkeypatch.setenv("CONSOLE_TOKEN_FOR_TEST", "an-admin-token-from-the-environment")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    _print_banner(load_config(str(path), strict_credentials=False), supervisor, "http://127.0.0.1:10000/v1", [])
    shown = capsys.readouterr().out
    assert "Console:" in shown and "an-admin-token-from-the-environment" not in shown and "token:" not in shown


# --- the pages' data on either store ---------------------------------------------------

def test_keys_spend_and_budgets_read_the_same_from_sqlite_and_redis(tmp_path, redis_url):
    """What the pages show, from a store the workers and `extproc keys` wrote: keys made
    through KeyBook, meter charges and a key's budget charged as the stages charge them."""
    import dataclasses

    import redis

    from extproc.console import data
    from extproc.store import open_store
    from extproc.store.base import maybe_await
    from extproc.store.keys import KeyBook, parse_budget
    from extproc.store.limits import Limit, plan_charges, settled_amount
    from extproc.store.meters import meter_charges, meter_combinations, settled_amounts

    raw = quickstart_config()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    sqlite_config = load_config(str(path), strict_credentials=False)
    sqlite_config = dataclasses.replace(sqlite_config, store=dataclasses.replace(
        sqlite_config.store, path=str(tmp_path / "budgets.sqlite3")))
    redis.Redis.from_url(redis_url).flushdb()
    redis_config = dataclasses.replace(sqlite_config, store=dataclasses.replace(
        sqlite_config.store, kind="redis", url=redis_url))
    seen = {}
    for config in (sqlite_config, redis_config):
        async def fill():
            store = open_store(config.store, patient=True)
            book = KeyBook(store)
            made, _ = await book.create(user="kim", team="support", budgets=(parse_budget("5/month", "usd"),),
                                        key_id="kim")
            await book.create(user="lee", team="research", key_id="lee")
            now = time.time()
            for key_id, user, team, model, usd in (("kim", "kim", "support", "gpt-4o-mini", 0.25),
                                                   ("kim", "kim", "support", "gpt-4o", 1.5),
                                                   ("lee", "lee", "research", "gpt-4o", 0.5)):
                values = {"key": key_id, "user": user, "team": team, "model": model, "backend": "mock"}
                charges = meter_charges(config.metering.sets, meter_combinations(config.metering.sets, values),
                                        (1.0, 100.0, 20.0, usd), now)
                await maybe_await(store.reserve(f"m-{key_id}-{model}", charges, now, now + 60))
                await maybe_await(store.settle(f"m-{key_id}-{model}", charges, settled_amounts(charges)))
            limit = Limit(name="key:kim.usd", scope="key", match="kim", kind="usd", limit=5.0, window="month")
            budget = plan_charges((limit,), made_key(made), 0, 1.75, now, 60)
            await maybe_await(store.reserve("b-kim", budget, now, now + 60))
            await maybe_await(store.settle("b-kim", budget, [settled_amount(c, 0, 1.75) for c in budget]))
            closing = store.close()
            if asyncio.iscoroutine(closing):
                await closing
        asyncio.run(fill())
        listed = data.key_list(config, "kim")
        by_team = data.spend(config, ("team",), "day", now=time.time())
        for_kim = data.spend(config, ("model",), "month", only={"key": "kim"})
        kim_budget = [b for b in data.budgets(config) if b["budget"] == "key:kim.usd"]
        # The cost over time (the overview's and the spend page's chart) sums to the total.
        assert sum(usd for _, usd in by_team["series"]) == pytest.approx(by_team["totals"]["usd"]) == 2.25
        # ... and drawn per group, the dearest first.
        assert [(group, round(sum(values), 8)) for group, values in by_team["series_by"]] == \
            [("support", 1.75), ("research", 0.5)]
        seen[config.store.kind] = (
            [(k["id"], k["team"], k["source"]) for k in listed["keys"]],
            [(r["team"], r["requests"], r["usd"]) for r in by_team["rows"]],
            [(r["model"], r["requests"], r["usd"]) for r in for_kim["rows"]],
            [(b["who"], b["used"], b["limit"], b["remaining"]) for b in kim_budget],
            [(t["team"], t["keys"], t["usd"]) for t in data.teams(config)])
    assert seen["sqlite"] == seen["redis"]
    keys, by_team, for_kim, budget, teams = seen["sqlite"]
    assert keys == [("kim", "support", "store")]
    assert by_team == [("support", 2, 1.75), ("research", 1, 0.5)]
    assert for_kim == [("gpt-4o", 1, 1.5), ("gpt-4o-mini", 1, 0.25)]
    assert budget == [("kim", 1.75, 5.0, 3.25)]
    assert ("support", 2, 1.75) in teams and ("research", 2, 0.5) in teams     # bob, kim; alice, lee


def made_key(stored):
    from extproc.config.filter_config import VirtualKey
    return VirtualKey(id=stored.id, sha256=b"", user=stored.user, team=stored.team, models=None)


def test_a_stacked_chart_draws_each_groups_share_of_each_bar():
    from extproc.console.charts import HEIGHT, stacked_chart
    chart = stacked_chart(["09:00", "10:00"], [("support", [3.0, 1.0]), ("research", [1.0, 0.0])], "USD")
    first = [bar for bar in chart["bars"] if bar["x"] == 0]
    assert [bar["colour"] for bar in first] == [0, 1] and chart["legend"] == ["support", "research"]
    assert sum(bar["h"] for bar in first) == pytest.approx(HEIGHT - 20)          # the highest bar: full height
    assert first[0]["h"] == pytest.approx(3 * first[1]["h"])                    # 3.0 against 1.0
    assert first[1]["y"] + first[1]["h"] == pytest.approx(first[0]["y"])        # stacked on top
    assert len(chart["bars"]) == 3                                              # nothing drawn for a 0
    assert stacked_chart([], [])["bars"] == []


def test_the_calls_table_tells_a_semantic_hit_and_its_similarity():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from extproc.console import pages
    from extproc.console.server import HERE
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    templates.filters.update(pages.FILTERS)
    table = templates.get_template("_calls_table.html")
    html = table.render(calls=[a_call(1, backend=None, cache="hit", cache_similarity=0.9705),
                               a_call(2, backend=None, cache="hit"), a_call(3, backend="mock", cache="miss",
                                                                          cache_similarity=0.41)])
    assert "answered from the cache (a question asked another way, similarity 0.97)" in html
    assert html.count("answered from the cache") == 2 and "0.41" not in html
