"""`extproc keys create | list | revoke | rotate`: keys managed at run time.

Straight on the store the gateway uses (the SQLite file under `--state-dir`, or the Redis
of the config's `store:`), or through a running gateway's admin API with `--admin URL`
(keys_admin.py). A key is printed once, as the last line of `create` and `rotate`;
`list` never prints one.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse

from ..store import StoreUnavailable
from ..store.keys import KeyBook, KeyProblem, parse_budget, parse_duration, parse_expiry, parse_models

from .operator_cli import ADMIN_TOKEN_ENV, ask_admin, on_store, operator_config


def add_keys_parser(commands) -> None:
    keys = commands.add_parser("keys", help="create, list, revoke and rotate keys managed at run time")
    actions = keys.add_subparsers(dest="action", required=True)

    def common(parser) -> None:
        parser.add_argument("--state-dir", help="the state dir `extproc up` uses (SQLite store)")
        parser.add_argument("--config", help="filter config whose store to use (default: the shipped quickstart)")
        parser.add_argument("--admin", help="a running gateway's admin URL: manage keys through its API")
        parser.add_argument("--admin-token-file", help=f"file holding the admin token (else ${ADMIN_TOKEN_ENV})")
        parser.add_argument("--json", action="store_true", help="print JSON")

    create = actions.add_parser("create", help="a new key (printed once, on the last line)")
    create.add_argument("--user", required=True)
    create.add_argument("--team", required=True)
    create.add_argument("--models", help="model names or patterns, comma-separated, or * (default: *)")
    create.add_argument("--budget-usd", help="N/WINDOW, WINDOW one of minute, hour, day, month")
    create.add_argument("--budget-tokens", help="N/WINDOW")
    create.add_argument("--expires", help="a duration (30d, 12h) or a date in UTC (2027-01-31)")
    create.add_argument("--id", help="the key's id (default: generated)")
    create.add_argument("--meta", action="append", default=[], metavar="NAME=VALUE",
                        help="free metadata, repeatable")
    common(create)

    listing = actions.add_parser("list", help="the keys and their state (never the keys themselves)")
    common(listing)

    revoke = actions.add_parser("revoke", help="refuse a key from now on (every worker within a second)")
    revoke.add_argument("id")
    common(revoke)

    rotate = actions.add_parser("rotate", help="a new key for the same id; the old one stays valid for --overlap")
    rotate.add_argument("id")
    rotate.add_argument("--overlap", default="0s", help="how long the old key keeps working (e.g. 1h; default 0s)")
    common(rotate)


def request_from_args(args) -> dict:
    """The operation as the admin API takes it (also what the store path runs)."""
    if args.action == "create":
        metadata = {}
        for item in args.meta:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise KeyProblem(f"--meta {item!r} must be NAME=VALUE")
            metadata[name] = value
        return {"user": args.user, "team": args.team, "models": args.models, "budget_usd": args.budget_usd,
                "budget_tokens": args.budget_tokens, "expires": args.expires, "id": args.id,
                "metadata": metadata}
    if args.action == "rotate":
        return {"overlap": args.overlap}
    return {}


# The fields of an operation that are text (the admin API's body is any JSON a caller sends).
_TEXT_FIELDS = ("user", "team", "models", "budget_usd", "budget_tokens", "expires", "id", "overlap")


def _refuse_fields_not_text(request: dict) -> None:
    for field in _TEXT_FIELDS:
        if request.get(field) is not None and not isinstance(request[field], str):
            raise KeyProblem(f"{field} must be a string")


async def run_operation(book: KeyBook, action: str, key_id: str | None, request: dict) -> dict:
    """One key operation; the answer as the CLI and the admin API print it."""
    now = time.time()
    _refuse_fields_not_text(request)
    if action == "create":
        budgets = tuple(parse_budget(request[field], unit) for field, unit in
                        (("budget_usd", "usd"), ("budget_tokens", "tokens")) if request.get(field))
        expires = parse_expiry(request["expires"], now) if request.get("expires") else None
        metadata = request.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise KeyProblem("metadata must be an object of strings")
        for field in ("user", "team"):
            if not isinstance(request.get(field), str):
                raise KeyProblem(f"{field} is required")
        stored, secret = await book.create(user=request["user"], team=request["team"],
                                           models=parse_models(request.get("models")), budgets=budgets,
                                           expires=expires, key_id=request.get("id"), metadata=metadata,
                                           now=now)
        return {**stored.described(now), "key": secret}
    if action == "list":
        return {"keys": [stored.described(now) for stored in await book.all()]}
    if action == "revoke":
        return (await book.revoke(key_id or "", now)).described(now)
    if action == "rotate":
        stored, secret = await book.rotate(key_id or "", parse_duration(request.get("overlap") or "0s"), now)
        return {**stored.described(now), "key": secret}
    raise KeyProblem(f"unknown operation {action!r}")


def cmd_keys(args) -> int:
    try:
        request = request_from_args(args)
        key_id = getattr(args, "id", None) if args.action in ("revoke", "rotate") else None
        answer = _through_admin(args, request, key_id) if args.admin else _on_store(args, request, key_id)
    except KeyProblem as problem:
        print(f"extproc keys {args.action}: {problem}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:
        print(f"extproc keys {args.action}: the store is unavailable: {error}", file=sys.stderr)
        return 1
    if answer is None:
        return 2
    _print(args, answer)
    return 0


def _on_store(args, request: dict, key_id: str | None) -> dict | None:
    config = operator_config(args)
    if config is None:
        return None
    reserved = frozenset(key.id for key in config.keys_by_hash.values())
    return on_store(config, lambda store: run_operation(KeyBook(store, reserved), args.action, key_id, request))


def _through_admin(args, request: dict, key_id: str | None) -> dict:
    if args.action == "create":
        return ask_admin(args, "POST", "/admin/keys", request)
    if args.action == "list":
        return ask_admin(args, "GET", "/admin/keys")
    return ask_admin(args, "POST", f"/admin/keys/{urllib.parse.quote(key_id or '', safe='')}/{args.action}", request)


def _print(args, answer: dict) -> None:
    if args.json:
        print(json.dumps(answer.get("keys", answer) if args.action == "list" else answer, indent=2))
        return
    if args.action == "list":
        rows = [("ID", "USER", "TEAM", "MODELS", "BUDGETS", "EXPIRES", "STATE")]
        for key in answer["keys"]:
            models = key["models"] if isinstance(key["models"], str) else ",".join(key["models"])
            rows.append((key["id"], key["user"], key["team"], models, ", ".join(key["budgets"]) or "-",
                         key["expires"] or "never", key["state"]))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        return
    if args.action == "revoke":
        print(f"Revoked key {answer['id']} (user {answer['user']}, team {answer['team']}); every worker "
              "refuses it within a second.")
        return
    models = answer["models"] if isinstance(answer["models"], str) else ",".join(answer["models"])
    overlap = answer["previous_valid_until"]
    print(f"{'Rotated' if args.action == 'rotate' else 'Created'} key {answer['id']}: user {answer['user']}, "
          f"team {answer['team']}, models {models}, budgets {', '.join(answer['budgets']) or 'none'}, "
          f"expires {answer['expires'] or 'never'}"
          + (f"; the previous key works until {overlap[-1]}" if overlap else ""))
    print("The key is shown only this once; the gateway keeps only its hash:")
    print(answer["key"])
