"""The console's pages: each a function of the request that names its template and what
it shows (data.py reads it), or a change to keys made through the same operation the
CLI and the admin API run (runtime/keys_cli.py's run_operation, handed in)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from ..store import StoreUnavailable
from ..store.calls import CallFilter
from ..store.keys import KeyBook, KeyProblem
from ..store.limits import WINDOWS as BUDGET_WINDOWS
from ..store.meters import NoMeter, valid_dimension
from ..store.runs import find_run, list_runs
from . import data, recent
from .charts import MAX_BARS, bar_chart, stacked_chart
from .config_view import masked_config, masked_text

_ONE_KEY = re.compile(r"/keys/([^/]+)")
_ONE_RUN = re.compile(r"/runs/([^/]+)")
_KEY_CHANGE = re.compile(r"/keys/([^/]+)/(revoke|rotate)")
MAX_FIELD = 256


@dataclass
class Answer:
    template: str = "error.html"
    context: dict = field(default_factory=dict)
    status: int = 200
    redirect: str | None = None
    csv: str | None = None
    filename: str = ""
    audit: tuple[str, str | None, str] | None = None      # (action, key id, outcome) of a change
    signs_out: bool = False


def route(console, session, method: str, path: str, query: dict, form: dict) -> Answer:
    config = console.current_config()
    if method == "POST":
        if path == "/logout":
            console.sessions.close(session)
            return Answer(redirect="/login", audit=("sign_out", None, "signed out"), signs_out=True)
        if not session.may("keys"):
            return Answer(status=403, context={"message": "Your role may not change keys."},
                          audit=(path.strip("/").replace("/", ".")[:64], None, f"refused: role {session.role}"))
        if path == "/keys":
            return _create(console, config, form)
        match = _KEY_CHANGE.fullmatch(path)
        if match:
            return _change(console, config, unquote(match[1])[:64], match[2], form)
        return Answer(status=404, context={"message": "No such page."})
    one = _one(query)
    if path == "/":
        window = _choice(one("window"), data.WINDOWS, "day")
        found = data.overview(config, window)
        return Answer("overview.html", {"o": found, "window": window, "windows": data.WINDOWS,
                                        "cost_chart": bar_chart([(_hour(t, found["window"]), v) for t, v in found["series"]],
                                                           "USD")})
    if path == "/keys":
        asked = one("page")
        page = int(asked) if asked.isascii() and asked.isdigit() and len(asked) <= 9 else 0   # "²" is a digit
        return Answer("keys.html", {"k": data.key_list(config, one("q")[:MAX_FIELD], page),
                                    "windows": BUDGET_WINDOWS, "may_change": session.may("keys")})
    match = _ONE_KEY.fullmatch(path)
    if match:
        return _key_page(config, session, unquote(match[1])[:64])
    if path == "/budgets":
        needle = one("q").strip().lower()[:MAX_FIELD]
        found = [b for b in data.budgets(config) if not needle or needle in b["budget"].lower()
                 or needle in b["who"].lower()]
        every_team = data.teams(config)
        return Answer("budgets.html", {"budgets": found[:data.MAX_ROWS], "total": len(found), "q": one("q")[:MAX_FIELD],
                                       "shown": min(len(found), data.MAX_ROWS), "teams": every_team[:data.MAX_ROWS],
                                       "team_count": len(every_team)})
    if path in ("/spend", "/spend.csv"):
        return _spend(config, query, path.endswith(".csv"))
    if path == "/calls":
        wanted = CallFilter(key_id=one("key")[:64], team=one("team")[:128], model=one("model")[:MAX_FIELD],
                            status=one("status")[:8], verdict=one("verdict")[:16], tag=one("tag")[:MAX_FIELD])
        return Answer("calls.html", {"calls": recent.calls(config, wanted), "f": wanted,
                                     "kept": config.console.calls_kept if config.console else 0})
    if path == "/guardrails":
        return Answer("guardrails.html", {"g": recent.findings_and_mcp(config)})
    if path == "/runs":
        key = one("key")[:64]
        return Answer("runs.html", {"runs": list_runs(config.store, limit=data.MAX_ROWS, key_id=key,
                                                      since=time.time() - 86_400), "key": key})
    match = _ONE_RUN.fullmatch(path)
    if match:
        found = find_run(config.store, unquote(match[1])[:128])
        if found is None:
            return Answer(status=404, context={"message": "No such run (or it expired).", "back": "/runs"})
        return Answer("run.html", {"r": found})
    if path == "/config":
        if not session.may("config"):
            return Answer(status=403, context={"message": "The config page is for the admin role."})
        # A warning or a refused reload's problem may quote a value: masked as the YAML is.
        return Answer("config.html", {"yaml": masked_config(config), "version": config.version,
                                      "config_path": config.path,
                                      "warnings": [masked_text(line) for line in config.warnings],
                                      "reloads": [{**reload, "problems": [masked_text(p) for p in reload["problems"]]}
                                                  for reload in reversed(console.reloads)]})
    return Answer(status=404, context={"message": "No such page."})


# --- keys ---------------------------------------------------------------------------

def _operate(console, config, action: str, key_id: str | None, request: dict) -> dict:
    reserved = frozenset(key.id for key in config.keys_by_hash.values())
    return asyncio.run(data._with_store(
        config, lambda store: console.run_operation(KeyBook(store, reserved), action, key_id, request)))


def _create(console, config, form: dict) -> Answer:
    field_of = _one(form)
    request = {"user": field_of("user").strip()[:MAX_FIELD], "team": field_of("team").strip()[:MAX_FIELD],
               "models": field_of("models").strip()[:4096] or None, "expires": field_of("expires").strip()[:64] or None,
               "id": field_of("id").strip()[:64] or None}
    for unit in ("usd", "tokens"):
        amount = field_of(f"budget_{unit}").strip()[:32]
        if amount:
            request[f"budget_{unit}"] = f"{amount}/{field_of(f'budget_{unit}_window') or 'month'}"
    try:
        made = _operate(console, config, "create", None, request)
    except KeyProblem as problem:
        return Answer("error.html", {"message": f"The key was not created: {problem}", "back": "/keys"}, 400,
                      audit=("create", request["id"], f"refused: {problem}"))
    except StoreUnavailable:
        return Answer("error.html", {"message": "The key store is unavailable.", "back": "/keys"}, 503,
                      audit=("create", request["id"], "store unavailable"))
    return Answer("key_made.html", {"made": made, "what": "Created"}, 201, audit=("create", made["id"], "created"))


def _change(console, config, key_id: str, action: str, form: dict) -> Answer:
    request = {"overlap": _one(form)("overlap").strip()[:16] or "0s"} if action == "rotate" else {}
    try:
        changed = _operate(console, config, action, key_id, request)
    except KeyProblem as problem:
        status = 404 if str(problem).startswith("no key") else 400
        return Answer("error.html", {"message": f"Not done: {problem}", "back": "/keys"}, status,
                      audit=(action, key_id, f"refused: {problem}"))
    except StoreUnavailable:
        return Answer("error.html", {"message": "The key store is unavailable.", "back": "/keys"}, 503,
                      audit=(action, key_id, "store unavailable"))
    if action == "rotate":
        return Answer("key_made.html", {"made": changed, "what": "Rotated"}, 200, audit=(action, key_id, "rotated"))
    return Answer(redirect=f"/keys/{quote(key_id, safe='')}", audit=(action, key_id, "revoked"))


def _key_page(config, session, key_id: str) -> Answer:
    key = data.one_key(config, key_id)
    if key is None:
        return Answer(status=404, context={"message": f"No key {key_id!r}.", "back": "/keys"})
    spend = {}
    for window in data.WINDOWS:
        try:
            spend[window] = data.spend(config, ("model",), window, only={"key": key_id})
        except NoMeter:
            spend = {}
            break
    return Answer("key.html", {"key": key, "spend": spend, "calls": recent.calls(config, CallFilter(key_id=key_id), 50),
                               "may_change": session.may("keys") and key["source"] == "store"})


# --- spend --------------------------------------------------------------------------

def _spend(config, query: dict, as_csv: bool) -> Answer:
    offered = data.dimensions(config)
    by = tuple(dict.fromkeys(d.strip().lower() for d in query.get("by", []) if valid_dimension(d.strip().lower())))
    by = by or (("team",) if "team" in offered else tuple(offered[:1]))
    window = _choice(_one(query)("window"), data.WINDOWS, "day")
    context = {"offered": offered, "by": by, "window": window, "windows": data.WINDOWS, "problem": None,
               "memo_seconds": data.SPEND_SECONDS,
               "result": None, "chart": None, "by_chart": None}
    try:
        result = data.spend(config, by, window) if by else None
    except NoMeter as problem:
        context["problem"] = str(problem)
        return Answer("spend.html", context, 400)
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*by, "requests", "input_tokens", "output_tokens", "usd"])
        for row in result["rows"] if result else []:
            writer.writerow([_cell(row[d]) for d in by] + [row["requests"], row["input_tokens"], row["output_tokens"],
                                                           f"{row['usd']:.8f}"])
        name = re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(by))[:100]      # a header's value: nothing else
        return Answer(csv=out.getvalue(), filename=f"spend-by-{name}-{window}.csv")
    if result:
        labels = [_hour(t, window) for t, _ in result["series"]]
        context.update(result=result, shown=result["rows"][:data.MAX_ROWS],
                       chart=stacked_chart(labels, result["series_by"], "USD"),
                       by_chart=bar_chart(_bars(by, result["rows"]), "USD"))
    return Answer("spend.html", context)


def _bars(by: tuple[str, ...], rows: list[dict]) -> list[tuple[str, float]]:
    """Cost by group, the dearest first: the chart's bars, the rest summed as one (a
    month by key is thousands of rows, and a chart has MAX_BARS)."""
    named = rows if len(rows) <= MAX_BARS else rows[:MAX_BARS - 1]
    shown = [(" / ".join(data.shown(d, r[d]) for d in by), r["usd"]) for r in named]
    if len(named) < len(rows):
        shown.append(("other", sum(r["usd"] for r in rows[len(named):])))
    return shown


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a tag's value is the caller's)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- helpers ------------------------------------------------------------------------

def _one(params: dict):
    return lambda name: (params.get(name) or [""])[0]


def _choice(value: str, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def _hour(epoch: float, window: str) -> str:
    return time.strftime("%m-%d" if window == "month" else "%H:00", time.gmtime(epoch))


def _when(epoch) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def _number(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _usd(value) -> str:
    return "-" if value is None else f"${value:,.6f}".rstrip("0").rstrip(".") if value else "$0"


def _in(epoch) -> str:
    seconds = max(0, int(epoch - time.time()))
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60}s"


FILTERS = {"when": _when, "number": _number, "usd": _usd, "resets_in": _in,
           "urlpart": lambda text: quote(str(text), safe=""),
           "shown": lambda value, dimension: data.shown(dimension, value)}
