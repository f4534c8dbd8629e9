"""What the operator commands (`extproc keys`, `extproc mcp`, `extproc runs`) share: the
config whose store they work on, that store opened and closed around one operation, and
a running gateway's admin API asked with the admin token.

Imports the config, the store and the guardrails' switch only; never a command module.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..config import envoy_config
from ..config.filter_config import GatewayConfig, load_config
from ..guardrails.config import detectors_not_made
from ..store import open_store
from ..store.keys import KeyProblem
from ..yamltree import ConfigError

ADMIN_TOKEN_ENV = "LLMGW_ADMIN_TOKEN"

T = TypeVar("T")


def operator_config(args) -> GatewayConfig | None:
    """The config named by `--config` (the shipped quickstart by default), its SQLite store
    under `--state-dir` when given; None, with its problems on stderr, when it is wrong.
    No guardrail detector is made: these commands read no traffic."""
    if args.state_dir:
        os.environ["LLMGW_STATE_DIR"] = args.state_dir      # before the config: its store's default path
    try:
        with detectors_not_made():
            return load_config(args.config or envoy_config.shipped("config/quickstart.yaml"),
                               strict_credentials=False)
    except ConfigError as error:
        for line in error.problems:
            print(line, file=sys.stderr)
        return None


def on_store(config: GatewayConfig, operation: Callable[[object], Awaitable[T]]) -> T:
    """`operation(store)` on the config's store, opened patiently and closed afterwards."""
    async def run() -> T:
        store = open_store(config.store, patient=True)
        try:
            return await operation(store)
        finally:
            closing = store.close()
            if asyncio.iscoroutine(closing):
                await closing
    return asyncio.run(run())


def admin_token_from(path: str | None) -> str:
    """The admin token: from `--admin-token-file`, else the environment."""
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as error:
            raise KeyProblem(f"cannot read the admin token file: {error.strerror}") from None
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip()


def ask_admin(args, method: str, path: str, body: dict | None = None) -> dict:
    """One call of a running gateway's admin API (`--admin URL`), its JSON answer; a refusal
    or an unreachable API is a KeyProblem naming it (never the token)."""
    token = admin_token_from(args.admin_token_file)
    if not token:
        raise KeyProblem(f"--admin needs the admin token: --admin-token-file FILE or ${ADMIN_TOKEN_ENV}")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(args.admin.rstrip("/") + path, data=data, method=method, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json",
        "x-admin-user": os.environ.get("USER", "unknown")})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise KeyProblem(f"the admin API answered {error.code}: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        raise KeyProblem(f"cannot reach the admin API at {args.admin}: {error}") from None
