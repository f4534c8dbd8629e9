"""`extproc doctor`: the deployment's smoke check, run after applying it. One line per
check, from the outside, as a caller and a scraper see the gateway:

  listener    the URL answers, and the ext_proc service behind Envoy does (a call with no
              key gets the gateway's own 401, not Envoy's 503 or a connection error)
  key         the key is accepted: its model list
  model       a model answers a one-token chat call (--model, else the first that does)
  store       the budget store is reachable from the replica that answered
              (GET /v1/gateway/usage reads it)
  config      the config version every answer came from, over several connections (the
              Service spreads them over the replicas): one version, or the replicas differ
  admin       each --admin URL: /readyz (workers and Envoy up on that replica)
  metrics     each --admin URL: /metrics answers with the gateway's families
  prometheus  --prometheus URL: the targets that scrape the gateway are up

Exit 0 when every check passed or was skipped (a check needs its flag), 1 otherwise.
The key is never printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

CONFIG_SAMPLES = 6
MAX_MODELS_TRIED = 5


@dataclass
class Check:
    name: str
    ok: bool | None          # None: skipped
    detail: str

    def line(self) -> str:
        mark = "skip" if self.ok is None else "ok" if self.ok else "FAIL"
        return f"{mark:<5} {self.name:<11} {self.detail}"


def run_doctor(url: str, key: str | None, admins: list[str], prometheus: str | None,
               model: str | None = None, timeout: float = 10.0, say=print) -> int:
    base = url.rstrip("/").removesuffix("/v1")
    checks: list[Check] = []

    def record(check: Check) -> Check:
        checks.append(check)
        say(check.line())
        return check

    with httpx.Client(timeout=timeout) as client:
        reachable = record(_listener(client, base))
        headers = {"authorization": f"Bearer {key}"} if key else {}
        models: list[str] = []
        if not key:
            for name in ("key", "model", "store", "config"):
                record(Check(name, None, "no --key given"))
        elif not reachable.ok:
            for name in ("key", "model", "store", "config"):
                record(Check(name, False, "the listener does not answer"))
        else:
            key_check, models = _key(client, base, headers)
            record(key_check)
            record(_model(client, base, headers, [model] if model else models) if key_check.ok
                   else Check("model", False, "the key was refused"))
            for check in _store_and_config(base, headers, timeout):
                record(check)
    for admin in admins:
        record(_admin(admin, timeout))
        record(_metrics(admin, timeout))
    if not admins:
        record(Check("admin", None, "no --admin given (the ext_proc admin: /readyz, /metrics)"))
    if prometheus:
        record(_prometheus(prometheus, admins, timeout))
    return 0 if all(check.ok is not False for check in checks) else 1


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:160]
    except (ValueError, AttributeError):
        return response.text[:160].strip()


def _listener(client: httpx.Client, base: str) -> Check:
    try:
        response = client.get(f"{base}/v1/models")
    except httpx.HTTPError as error:
        return Check("listener", False, f"{base}: cannot connect ({type(error).__name__}: {error})")
    try:
        code = (response.json().get("error") or {}).get("code")
    except (ValueError, AttributeError):
        code = None
    if response.status_code == 401 and code == "invalid_api_key":
        return Check("listener", True, f"{base} answers; the ext_proc service behind Envoy refuses a call "
                                       "without a key (401 invalid_api_key)")
    return Check("listener", False, f"{base} answered {response.status_code} to a call without a key, not the "
                                    f"gateway's 401: {_error_text(response)}")


def _key(client: httpx.Client, base: str, headers: dict) -> tuple[Check, list[str]]:
    response = client.get(f"{base}/v1/models", headers=headers)
    if response.status_code != 200:
        return Check("key", False, f"refused: {response.status_code} {_error_text(response)}"), []
    models = [entry.get("id") for entry in response.json().get("data", []) if isinstance(entry, dict)]
    return Check("key", True, f"accepted; it may use {len(models)} models"), [m for m in models if m]


def _model(client: httpx.Client, base: str, headers: dict, candidates: list[str]) -> Check:
    tried = []
    for name in candidates[:MAX_MODELS_TRIED]:
        started = time.monotonic()
        try:
            response = client.post(f"{base}/v1/chat/completions", headers=headers,
                                   json={"model": name, "max_tokens": 1,
                                         "messages": [{"role": "user", "content": "ping"}]})
        except httpx.HTTPError as error:
            tried.append(f"{name}: {type(error).__name__}")
            continue
        if response.status_code == 200:
            backend = response.headers.get("x-gateway-backend", "?")
            return Check("model", True, f"{name} answered in {time.monotonic() - started:.2f} s "
                                        f"(backend {backend})")
        tried.append(f"{name}: {response.status_code} {_error_text(response)[:80]}")
    if not candidates:
        return Check("model", False, "the key may use no model")
    return Check("model", False, "no model answered: " + "; ".join(tried))


def _store_and_config(base: str, headers: dict, timeout: float) -> list[Check]:
    versions: dict[str, int] = {}
    failures: list[str] = []
    for _ in range(CONFIG_SAMPLES):
        try:                   # a new connection each: a Service may send each to another replica
            response = httpx.get(f"{base}/v1/gateway/usage", headers=headers, timeout=timeout)
        except httpx.HTTPError as error:
            failures.append(f"{type(error).__name__}")
            continue
        if response.status_code != 200:
            failures.append(f"{response.status_code} {_error_text(response)}")
            continue
        version = str(response.json().get("config_version"))
        versions[version] = versions.get(version, 0) + 1
    if failures:
        store = Check("store", False, f"{len(failures)} of {CONFIG_SAMPLES} reads failed: {failures[0]}")
    else:
        store = Check("store", True, f"reachable from every answer ({CONFIG_SAMPLES} reads of the key's budgets)")
    if len(versions) == 1:
        [(version, count)] = versions.items()
        config = Check("config", True, f"{version} on every answer ({count} connections)")
    elif versions:
        seen = ", ".join(f"{version} ({count})" for version, count in sorted(versions.items()))
        config = Check("config", False, f"the replicas differ: {seen}")
    else:
        config = Check("config", False, "no answer named its config version")
    return [store, config]


def _admin(admin: str, timeout: float) -> Check:
    admin = admin.rstrip("/")
    try:
        response = httpx.get(f"{admin}/readyz", timeout=timeout)
    except httpx.HTTPError as error:
        return Check("admin", False, f"{admin}: cannot connect ({type(error).__name__})")
    text = response.text.strip()[:120]
    return Check("admin", response.status_code == 200, f"{admin}/readyz: {response.status_code} {text}")


def _metrics(admin: str, timeout: float) -> Check:
    admin = admin.rstrip("/")
    try:
        response = httpx.get(f"{admin}/metrics", timeout=timeout)
    except httpx.HTTPError as error:
        return Check("metrics", False, f"{admin}/metrics: cannot connect ({type(error).__name__})")
    if response.status_code != 200 or "gateway_requests_total" not in response.text:
        return Check("metrics", False, f"{admin}/metrics: {response.status_code}, without gateway_requests_total")
    families = sum(1 for line in response.text.splitlines() if line.startswith("# TYPE "))
    return Check("metrics", True, f"{admin}/metrics: {families} metric families")


def _prometheus(prometheus: str, admins: list[str], timeout: float) -> Check:
    """The active targets that scrape one of the --admin addresses (or, with none given,
    whose job names a gateway), all up."""
    prometheus = prometheus.rstrip("/")
    try:
        response = httpx.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=timeout)
        targets = response.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        return Check("prometheus", False, f"{prometheus}: no target list ({type(error).__name__})")
    wanted = {urlsplit(admin).netloc for admin in admins}
    if wanted:
        ours = [target for target in targets if urlsplit(target.get("scrapeUrl", "")).netloc in wanted]
    else:
        ours = [target for target in targets if "gateway" in str((target.get("labels") or {}).get("job", ""))]
    if not ours:
        return Check("prometheus", False, f"{prometheus}: no active target scrapes "
                                          f"{', '.join(sorted(wanted)) or 'a job named like gateway'}")
    down = [target for target in ours if target.get("health") != "up"]
    if down:
        first = down[0]
        return Check("prometheus", False, f"{len(down)} of {len(ours)} targets not up: {first.get('scrapeUrl')} "
                                          f"{first.get('health')} {first.get('lastError', '')[:100]}")
    return Check("prometheus", True, f"{len(ours)} target(s) up: " +
                 ", ".join(sorted(target.get("scrapeUrl", "") for target in ours))[:200])


KEY_ENV = "EXTPROC_DOCTOR_KEY"


def add_doctor_parser(commands) -> None:
    doctor = commands.add_parser(
        "doctor", help="smoke-check a deployed gateway: listener, key, model, store, config on every replica, "
                       "admin, metrics, Prometheus")
    doctor.add_argument("--url", required=True, help="the gateway's URL, as callers use it (with or without /v1)")
    doctor.add_argument("--key", help=f"a key to call with (default: ${KEY_ENV}; never printed)")
    doctor.add_argument("--model", help="the model to call (default: the first of the key's models that answers)")
    doctor.add_argument("--admin", action="append", default=[], metavar="URL",
                        help="an ext_proc admin URL (/readyz, /metrics); once per replica")
    doctor.add_argument("--prometheus", metavar="URL", help="a Prometheus whose targets should include the admin")
    doctor.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")


def cmd_doctor(args) -> int:
    import os
    return run_doctor(args.url, args.key or os.environ.get(KEY_ENV), args.admin, args.prometheus,
                      model=args.model, timeout=args.timeout)
