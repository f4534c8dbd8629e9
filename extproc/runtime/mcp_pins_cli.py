"""`extproc mcp pending | approve`: MCP tool definitions waiting for an operator.

A profile pins the tools of each server's first `tools/list`; a tool whose definition
changed since, or a new one, is hidden from callers and refused until approved
(store/tool_pins.py). `pending` lists them with what changed; `approve PROFILE TOOL`
(or `--all`) makes the definition last seen the tool's pin, so it is listed and called
again. Straight on the store the gateway uses (`--state-dir`, or the config's Redis), or
through a running gateway's admin API with `--admin URL` (`GET /admin/mcp/pending`,
`POST /admin/mcp/approve`). Each approval writes one audit line on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse

from ..config.filter_config import GatewayConfig
from ..store import StoreUnavailable
from ..store.keys import KeyProblem
from ..store.tool_pins import approve, pending_tools
from .operator_cli import ADMIN_TOKEN_ENV, ask_admin, on_store, operator_config


def add_mcp_parser(commands) -> None:
    mcp = commands.add_parser("mcp", help="MCP tool definitions waiting for approval (pending, approve)")
    actions = mcp.add_subparsers(dest="action", required=True)

    def common(parser) -> None:
        parser.add_argument("--state-dir", help="the state dir `extproc up` uses (SQLite store)")
        parser.add_argument("--config", help="filter config whose store to use (default: the shipped quickstart)")
        parser.add_argument("--admin", help="a running gateway's admin URL: through its API")
        parser.add_argument("--admin-token-file", help=f"file holding the admin token (else ${ADMIN_TOKEN_ENV})")
        parser.add_argument("--json", action="store_true", help="print JSON")

    pending = actions.add_parser("pending", help="tools hidden until approved, with what changed")
    pending.add_argument("profile", nargs="?", help="only this profile's")
    common(pending)
    approving = actions.add_parser("approve", help="pin a pending tool's definition: it is shown and called again")
    approving.add_argument("profile")
    approving.add_argument("tool", nargs="?", help="the tool, as the profile names it")
    approving.add_argument("--all", action="store_true", help="every pending tool of the profile")
    common(approving)


async def mcp_operation(store, action: str, profile: str | None, tool: str | None) -> dict:
    if action == "pending":
        return {"pending": await pending_tools(store, profile)}
    if not profile:
        raise KeyProblem("approve needs the profile")
    approved = await approve(store, profile, tool)
    if not approved:
        raise KeyProblem(f"nothing of profile {profile!r} waits for approval"
                         + (f" under the name {tool!r}" if tool else ""))
    return {"approved": approved}


def run_on_store(config: GatewayConfig, action: str, profile: str | None, tool: str | None) -> dict:
    return on_store(config, lambda store: mcp_operation(store, action, profile, tool))


def cmd_mcp(args) -> int:
    if args.action == "approve" and not args.tool and not args.all:
        print("extproc mcp approve: name the tool, or --all for every pending tool of the profile", file=sys.stderr)
        return 2
    tool = None if args.action == "pending" or args.all else args.tool
    try:
        answer = _through_admin(args, tool) if args.admin else _on_store(args, tool)
    except KeyProblem as problem:
        print(f"extproc mcp {args.action}: {problem}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:
        print(f"extproc mcp {args.action}: the store is unavailable: {error}", file=sys.stderr)
        return 1
    if answer is None:
        return 2
    if args.action == "approve" and not args.admin:
        audit("cli", os.environ.get("USER", "unknown"), answer["approved"])
    _print(args, answer)
    return 0


def _on_store(args, tool: str | None) -> dict | None:
    config = operator_config(args)
    return None if config is None else run_on_store(config, args.action, args.profile, tool)


def _through_admin(args, tool: str | None) -> dict:
    if args.action == "pending":
        query = f"?profile={urllib.parse.quote(args.profile)}" if args.profile else ""
        return ask_admin(args, "GET", "/admin/mcp/pending" + query)
    return ask_admin(args, "POST", "/admin/mcp/approve", {"profile": args.profile, "tool": tool})


def audit(via: str, who: str, approved: list[dict]) -> None:
    """One line per approved tool, beside the gateway's other audit lines (JSON on stdout)."""
    for entry in approved:
        line = {"ts": time.time(), "audit": "mcp_tool_approved", "via": via, "who": who[:64],
                "profile": entry["profile"], "tool": entry["tool"], "reason": entry["reason"],
                "digest": entry["digest"], "diff": entry["diff"]}
        sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _print(args, answer: dict) -> None:
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    if args.action == "pending":
        if not answer["pending"]:
            print("No tool waits for approval.")
        for entry in answer["pending"]:
            print(f"{entry['profile']}  {entry['tool']}  ({entry['reason']}, seen "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(entry['seen'] or 0))} UTC)")
            for field, change in entry["diff"].items():
                if isinstance(change, dict):
                    print(f"    {field}: {change['was']!r} -> {change['now']!r}")
        return
    for entry in answer["approved"]:
        changed = "a new tool" if entry["diff"].get("new") else "changed: " + ", ".join(entry["diff"])
        print(f"Approved {entry['profile']}/{entry['tool']} ({changed}); callers see it from their next tools/list.")
