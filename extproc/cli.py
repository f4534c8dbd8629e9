"""The `extproc` command: up, serve, mock-provider, check (docs/configuration.md and the README say what each does)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


# Light imports only: `up` starts a worker, the MCP aggregator and the mock provider as
# `extproc` commands, and each pays for what this module imports (the mock needs none of
# the config code). The commands import what they use.
from .config import local_ports
from .config.state_dir import default_state_dir
from .yamltree import safe_load
from .runtime.with_parent import die_with_parent

DEFAULT_STATE_DIR = Path(default_state_dir())


def main(argv: list[str] | None = None) -> None:
    die_with_parent()          # a child of the supervisor goes with it (runtime/with_parent.py)
    parser = argparse.ArgumentParser(prog="extproc", description="LLM gateway ext_proc service.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the quickstart: Envoy, workers and mock provider")
    up.add_argument("--config", help="filter config (default: the shipped quickstart)")
    up.add_argument("--envoy", help="an Envoy config to run as written (default: made from the filter config)")
    up.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                    help=f"where budgets and spend are kept (default: {DEFAULT_STATE_DIR})")
    up.add_argument("--workers", type=int, help="ext_proc worker processes (default: one per core)")
    up.add_argument("--fixtures", help="folder of recorded responses the mock may replay (default: the shipped recordings)")
    up.add_argument("--port-offset", type=int, default=0, metavar="N",
                    help="move every port of the gateway (Envoy, admin, console, mocks, MCP servers) by N, "
                         "and its Envoy admin socket apart: a second quickstart beside the first")
    up.add_argument("--log", action="store_true",
                    help="the processes' logs on this terminal (default: files under <state dir>/logs)")

    serve = commands.add_parser("serve", help="only the ext_proc service (beside Envoy)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--workers", type=int)

    mock = commands.add_parser("mock-provider", help="the OpenAI-compatible mock upstream")
    mock.add_argument("--port", type=int, default=10101)
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--api-key", help="require this key (default: accept any)")
    mock.add_argument("--config", help="a filter config whose mock_provider section to serve")
    mock.add_argument("--fixtures", help="folder of recorded responses (x-mock-replay; default: the shipped recordings)")

    mock_mcp = commands.add_parser("mock-mcp", help="the demo MCP server (streamable HTTP, official mcp SDK)")
    mock_mcp.add_argument("--port", type=int, default=10110)
    mock_mcp.add_argument("--host", default="127.0.0.1")
    mock_mcp.add_argument("--token", default="", help="require this bearer token (default: none)")

    generate = commands.add_parser("envoy-config", help="write the Envoy config a filter config runs with")
    generate.add_argument("--config", help="filter config (default: the shipped quickstart)")
    generate.add_argument("--target", choices=("local", "kubernetes"), default="local",
                          help="local: 127.0.0.1 as `extproc up` runs it; kubernetes: beside `extproc serve` "
                               "in a pod (0.0.0.0:8080, Envoy's health route)")
    generate.add_argument("--listen", help="HOST:PORT of the API listener (default: the target's)")
    generate.add_argument("--admin", help="Envoy's admin: a socket path (mode 0600) or HOST:PORT "
                                          "(default: the target's socket)")
    generate.add_argument("--admin-read", help="HOST:PORT of the read-only view of Envoy's admin (GET of stats, "
                                               "readiness, clusters; default: the target's, 127.0.0.1:9901 locally)")
    generate.add_argument("--workers", type=int, help="ext_proc endpoints (default: server.workers, else 2)")

    check = commands.add_parser("check", help="validate a filter config (and its Envoy config)")
    check.add_argument("--config", required=True)
    check.add_argument("--envoy", help="the Envoy config it runs with")

    drain = commands.add_parser("drain", help="Kubernetes preStop: Envoy stops listening and its requests "
                                "in flight (long streams too) end, before the pod's processes are stopped")
    drain.add_argument("--envoy-admin", default="/tmp/llm-gateway/envoy-admin.sock",
                       help="Envoy's admin: its socket path, or http://HOST:PORT")
    drain.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most (default 300)")
    drain.add_argument("--wait-only", action="store_true",
                       help="only wait for Envoy's requests to end (the ext_proc container: keep serving them)")

    usage = commands.add_parser("usage", help="spend and remaining budget per key and team")
    usage.add_argument("--config", help="filter config (default: the shipped quickstart)")
    usage.add_argument("--state-dir", help="the state dir `extproc up` used (SQLite store)")
    usage.add_argument("--by", help="spend grouped by DIM[,DIM...]: key, user, team, model, backend, cache, "
                       "tag:<name> (a set of dimensions the config's `metering` keeps)")
    usage.add_argument("--window", choices=("hour", "day", "month"), default="day",
                       help="with --by: the current hour, day or month, UTC (default day)")
    usage.add_argument("--json", action="store_true", help="with --by: JSON, for scripts")

    cache = commands.add_parser("cache", help="the response cache: its entries (stats) or their removal (purge)")
    cache.add_argument("action", choices=("stats", "purge"))
    cache.add_argument("--config", help="filter config (default: the shipped quickstart)")
    cache.add_argument("--state-dir", help="the state dir `extproc up` used (embedded store)")
    cache.add_argument("--scope", help="only this scope's entries: team:<team>, key:<key id>, user:<user> or global")
    cache.add_argument("--model", help="only this model's entries")
    cache.add_argument("--json", action="store_true", help="JSON, for scripts")

    command = (sys.argv[1:] if argv is None else argv)[:1]
    if command not in (["worker"], ["mcp-aggregator"], ["mock-provider"]):
        # The operators' commands whose parsers live with their code: a process `up`
        # starts (a worker, the aggregator, the mock) does not import them (~0.1 s).
        from .runtime.keys_cli import add_keys_parser
        from .runtime.token_cli import add_token_parser
        from .runtime.runs_cli import add_runs_parser, cmd_runs
        from .runtime.mcp_pins_cli import add_mcp_parser
        add_keys_parser(commands)
        add_token_parser(commands)
        add_runs_parser(commands)
        _COMMANDS["runs"] = cmd_runs
        add_mcp_parser(commands)
        from .runtime.doctor import add_doctor_parser, cmd_doctor
        add_doctor_parser(commands)
        _COMMANDS["doctor"] = cmd_doctor

    # The supervisor's own commands: run by `up` and `serve`, never listed in --help.
    public = [action.dest for action in commands._choices_actions]
    worker = commands.add_parser("worker")
    worker.add_argument("--config", required=True)
    worker.add_argument("--address", required=True)
    worker.add_argument("--health-address", help="also serve gRPC health here (TCP)")
    aggregator = commands.add_parser("mcp-aggregator")
    aggregator.add_argument("--config", required=True)
    commands.metavar = "{" + ",".join(public) + "}"

    args = parser.parse_args(argv)
    sys.exit(_COMMANDS[args.command](args))


def _load_or_report(path: str, *, strict_credentials: bool = True):
    from .config.report import load_or_report
    return load_or_report(path, strict_credentials=strict_credentials)


def cmd_up(args) -> int:
    from .runtime.up_cli import up
    return up(args)


def cmd_serve(args) -> int:
    from .guardrails.config import detectors_not_made
    from .runtime.supervisor import Supervisor
    with detectors_not_made():
        config = _load_or_report(args.config)
    if config is None:
        return 2
    if config.mcp.combined_profiles:            # the aggregator serves only Envoy: they share a secret
        from .config.envoy_mcp import AGGREGATOR_SECRET_ENV, aggregator_secret_problem
        problem = aggregator_secret_problem(os.environ.get(AGGREGATOR_SECRET_ENV))
        if problem is not None:
            print(f"extproc serve: {problem}", file=sys.stderr)
            return 2
    supervisor = Supervisor(config, envoy=None, run_dir=Path(config.server.socket_dir),
                            workers=args.workers)
    try:
        supervisor.start()
    except (RuntimeError, OSError) as error:
        print(f"extproc serve: {error}", file=sys.stderr)
        supervisor.stop(grace=2)
        return 1
    print(f"ext_proc serving {supervisor.worker_count} workers in {config.server.socket_dir}; "
          f"admin http://{config.server.admin_address}", flush=True)
    if not (config.server.workers or args.workers):
        # Beside a fixed Envoy config, its extproc cluster must list as many sockets.
        print(f"warning: server.workers is auto: {supervisor.worker_count} workers, one per core; Envoy's "
              f"extproc cluster must list as many endpoints (set server.workers to pin it)", file=sys.stderr)
    return supervisor.run_forever()


def cmd_mock(args) -> int:
    import asyncio

    import uvloop

    from .mock.mcp_demo import mcp_listeners_from_config
    from .mock.server import Listener, listeners_from_config, serve
    from .mock.vllm_pool import pools_from_config
    mcp_listeners, pools = [], []
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            raw = safe_load(handle) or {}
        local_ports.shift_config(raw, local_ports.port_offset())      # `up --port-offset`, as the gateway's
        spec = raw.get("mock_provider") or {}
        listeners = listeners_from_config(spec, args.fixtures)
        mcp_listeners = mcp_listeners_from_config(spec)     # the demo MCP server, same process
        try:
            pools = pools_from_config(spec)                 # simulated vLLM replicas, same process
        except ValueError as error:
            print(f"extproc mock-provider: {error}", file=sys.stderr)
            return 1
    else:
        listeners = [Listener(name="mock", port=args.port, host=args.host, api_key=args.api_key,
                              fixtures=args.fixtures)]

    async def serve_all() -> None:
        if not mcp_listeners:
            return await serve(listeners, pools)
        from .mock.mcp_demo import serve_mcp
        await asyncio.gather(serve(listeners, pools), serve_mcp(mcp_listeners))
    try:
        uvloop.run(serve_all())
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"extproc mock-provider: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_mock_mcp(args) -> int:
    import uvloop

    from .mock.mcp_demo import McpListener, serve_mcp
    try:
        uvloop.run(serve_mcp([McpListener(name="mcp-demo", port=args.port, host=args.host, token=args.token)]))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        print(f"extproc mock-mcp: {error}", file=sys.stderr)
        return 1
    return 0


GENERATED_HEADER = """\
# The Envoy config of the gateway whose filter config is {config} ({target}): made by
# `extproc envoy-config --config {config}{target_flag}` from envoy/template.yaml, where every filter,
# route and cluster is commented. A test fails when this file and its sources drift apart.
"""


def cmd_envoy_config(args) -> int:
    from .config import envoy_config
    from .config.envoy_gen import GenerationError, generate
    from .guardrails.config import detectors_not_made
    path = args.config or envoy_config.shipped("config/quickstart.yaml")
    with detectors_not_made():
        config = _load_or_report(path, strict_credentials=False)     # (Envoy needs no provider's key)
    if config is None:
        return 2
    try:
        envoy = generate(config, args.target, listen=args.listen, admin=args.admin, admin_read=args.admin_read,
                         workers=args.workers)
    except GenerationError as error:
        print(f"extproc envoy-config: {error}", file=sys.stderr)
        return 2
    shown = args.config or "config/quickstart.yaml"
    flag = " --target kubernetes" if args.target == "kubernetes" else ""
    sys.stdout.write(envoy_config.dump(envoy, GENERATED_HEADER.format(config=shown, target=args.target,
                                                                       target_flag=flag)))
    return 0


def cmd_check(args) -> int:
    from .credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
    from .config.check import check
    if DEMO_SERVICE_ACCOUNT_ENV not in os.environ:        # as `up` sets it (the quickstart's Vertex AI)
        os.environ[DEMO_SERVICE_ACCOUNT_ENV] = demo_service_account()
    problems, summary = check(args.config, args.envoy)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(summary)
    return 1 if problems else 0


def cmd_usage(args) -> int:
    from .config import envoy_config
    from .guardrails.config import detectors_not_made
    from .runtime.usage_report import usage_table
    if args.state_dir:
        os.environ["LLMGW_STATE_DIR"] = args.state_dir
    with detectors_not_made():
        config = _load_or_report(args.config or envoy_config.shipped("config/quickstart.yaml"),
                                 strict_credentials=False)      # a report calls no provider
    if config is None:
        return 2
    if args.by:
        return _usage_by(config, args)
    print(usage_table(config))
    return 0


def _usage_by(config, args) -> int:
    import json

    from .runtime.usage_report import parse_by, usage_by, usage_by_table
    from .store.meters import NoMeter
    try:
        result = usage_by(config, parse_by(args.by), args.window)
    except (ValueError, NoMeter) as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else usage_by_table(result))
    return 0


def cmd_cache(args) -> int:
    import json

    from .config import envoy_config
    from .guardrails.config import detectors_not_made
    from .runtime.cache_admin import cache_purge, cache_stats, stats_table
    from .store import StoreUnavailable
    if args.state_dir:
        os.environ["LLMGW_STATE_DIR"] = args.state_dir
    with detectors_not_made():
        config = _load_or_report(args.config or envoy_config.shipped("config/quickstart.yaml"),
                                 strict_credentials=False)      # calls no provider
    if config is None:
        return 2
    try:
        if args.action == "purge":
            purged = cache_purge(config, args.scope, args.model)
            print(json.dumps({"purged": purged}) if args.json else f"Purged {purged:,} entries.")
        else:
            stats = cache_stats(config, args.scope, args.model)
            print(json.dumps(stats, indent=2) if args.json else stats_table(stats))
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    except StoreUnavailable as error:
        print(f"The response cache's store is unavailable: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_drain(args) -> int:
    from .runtime.envoy_admin import drain_envoy
    drained = drain_envoy(args.envoy_admin.rstrip("/") if args.envoy_admin.startswith("http") else args.envoy_admin, args.timeout, stop_listening=not args.wait_only)
    if not drained:
        print(f"extproc drain: requests still in flight after {args.timeout:g} s", file=sys.stderr)
    return 0


def cmd_keys(args) -> int:
    from .runtime.keys_cli import cmd_keys as keys
    return keys(args)


def cmd_token(args) -> int:
    from .runtime.token_cli import cmd_token as token
    return token(args)


def cmd_mcp(args) -> int:
    from .runtime.mcp_pins_cli import cmd_mcp as mcp
    return mcp(args)


def cmd_mcp_aggregator(args) -> int:
    from .guardrails.config import detectors_not_made
    from .runtime.mcp_aggregator_front import serve     # the MCP SDK: loaded at the first request
    with detectors_not_made():                  # it calls MCP servers; the workers guard their results
        config = _load_or_report(args.config)
    if config is None:
        return 2
    try:
        serve(config.mcp)
    except ValueError as error:                 # no secret: it would serve anyone
        print(f"extproc mcp-aggregator: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_worker(args) -> int:
    from .runtime.worker import run_worker
    run_worker(args.config, args.address, args.health_address)
    return 0


_COMMANDS = {"up": cmd_up, "serve": cmd_serve, "mock-provider": cmd_mock, "mock-mcp": cmd_mock_mcp, "check": cmd_check,
             "usage": cmd_usage, "cache": cmd_cache, "keys": cmd_keys, "token": cmd_token, "worker": cmd_worker, "drain": cmd_drain,
             "envoy-config": cmd_envoy_config, "mcp-aggregator": cmd_mcp_aggregator, "mcp": cmd_mcp}
