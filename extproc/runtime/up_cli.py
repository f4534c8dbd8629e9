"""`extproc up`: the quickstart, or any config, run whole on one host: Envoy (its config
made from the filter config unless given), the workers, the MCP aggregator and the mock
provider, as children of one supervisor; the banner that says where each listens.
Imported by the command only (cli.py keeps its own imports light)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config import envoy_config, local_ports
from ..config.report import load_or_report
from ..config.envoy_gen import TARGETS, GenerationError, generate
from ..credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
from ..guardrails.config import detectors_not_made
from ..yamltree import safe_load
from .supervisor import Supervisor, new_run_dir
from .up_logs import send_logs_to_files


def up(args) -> int:
    config_path = args.config or envoy_config.shipped("config/quickstart.yaml")
    if not 0 <= args.port_offset <= local_ports.MAX_OFFSET:
        print(f"extproc up: --port-offset must be between 0 and {local_ports.MAX_OFFSET}", file=sys.stderr)
        return 2
    if args.port_offset and args.envoy:
        print("extproc up: --port-offset moves the Envoy config `up` makes; with --envoy, set its "
              "listeners in that file", file=sys.stderr)
        return 2
    os.environ[local_ports.PORT_OFFSET_ENV] = str(args.port_offset)     # every child loads the same ports
    Path(args.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)    # owner only: the store is there
    os.environ["LLMGW_STATE_DIR"] = args.state_dir       # before the config: its store's default path
    if DEMO_SERVICE_ACCOUNT_ENV not in os.environ:        # the quickstart's Vertex AI provider signs with it
        os.environ[DEMO_SERVICE_ACCOUNT_ENV] = demo_service_account()
    with detectors_not_made():                            # the workers make them
        config = load_or_report(config_path)
    if config is None:
        return 2
    try:
        envoy = envoy_config.load(args.envoy) if args.envoy else generate(config, **_moved(args.port_offset))
    except GenerationError as error:
        print(f"extproc up: {error}", file=sys.stderr)
        return 2
    # What the banner shows is read now: once the gateway answers /readyz its files may be
    # swapped or gone (a ConfigMap update), and the running gateway must not need them again.
    endpoint, demo = _endpoint(envoy), _demo_keys(config.path)
    admin_read = _admin_read(envoy)
    busy = local_ports.first_port_in_use(_listeners(config, envoy))
    if busy is not None:
        what, address = busy
        print(f"extproc up: {address} ({what}) is already in use: stop what listens there, or move every "
              f"port of this gateway with --port-offset N (e.g. --port-offset 1000)", file=sys.stderr)
        return 1
    logs = None if args.log else send_logs_to_files(args.state_dir)    # the terminal keeps the banner
    supervisor = Supervisor(config, envoy=envoy, run_dir=new_run_dir(), owns_run_dir=True,
                            workers=args.workers, fixtures=args.fixtures)
    try:
        supervisor.start()
    except (RuntimeError, OSError) as error:      # OSError: a port already in use
        print(f"extproc up: {error}" + (f" (the processes' logs: {logs[1]})" if logs else ""), file=sys.stderr)
        supervisor.stop(grace=2)
        return 1
    _write_demo_console_token(config, Path(args.state_dir))
    _print_banner(config, supervisor, endpoint, demo, admin_read, logs)
    return supervisor.run_forever()


def _write_demo_console_token(config, state_dir: Path) -> None:
    """A demo admin token written in the config itself, also in `<state dir>/console-token`
    (owner only), so a script signs in without reading the banner. Tokens from the
    environment or a file are the operators' and are never written anywhere."""
    if config.console is None:
        return
    for role, token, source in config.console.tokens:
        if role == "admin" and source == "inline":
            path = state_dir / "console-token"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(token.reveal() + "\n")
            path.chmod(0o600)
            return


def _moved(offset: int) -> dict[str, str]:
    """generate()'s local listeners and admin socket, moved by a port offset."""
    if not offset:
        return {}
    local = TARGETS["local"]
    return {"listen": local_ports.shift_address(local["listen"], offset),
            "admin_read": local_ports.shift_address(local["admin_read"], offset),
            "admin": f"{local['socket_dir']}-{offset}/envoy-admin.sock"}


def _listeners(config, envoy: dict) -> list[tuple[str, str]]:
    """What `up` is about to listen on, named as a person would look for it."""
    found = []
    for listener in envoy["static_resources"]["listeners"]:
        address = (listener.get("address") or {}).get("socket_address")
        if address:
            found.append((f"Envoy's listener {listener.get('name', '')}".strip(),
                          f"{address['address']}:{address['port_value']}"))
    found.append(("the ext_proc admin", config.server.admin_address))
    if config.console is not None:
        found.append(("the console", config.console.listen))
    for section, what in (("listeners", "the mock provider"), ("mcp_listeners", "a demo MCP server")):
        for listener in (config.mock_provider or {}).get(section) or ():
            if isinstance(listener, dict) and isinstance(listener.get("port"), int):
                found.append((f"{what} {listener.get('name', '')}".strip(), f"127.0.0.1:{listener['port']}"))
    for pool in (config.mock_provider or {}).get("vllm_pools") or ():    # replica i on port + i
        if isinstance(pool, dict) and isinstance(pool.get("port"), int) and isinstance(pool.get("replicas"), int):
            found.extend((f"the simulated vLLM replica {pool.get('name', '')}-{i}",
                          f"{pool.get('host', '127.0.0.1')}:{pool['port'] + i}") for i in range(pool["replicas"]))
    if config.mcp.combined_profiles:
        found.append(("the MCP aggregator", config.mcp.aggregator.address))
    return found


def _endpoint(envoy: dict) -> str:
    address = envoy["static_resources"]["listeners"][0]["address"]["socket_address"]
    return f"http://{address['address']}:{address['port_value']}/v1"


def _admin_read(envoy: dict) -> str | None:
    """The read-only view of Envoy's admin (config/envoy_gen.py), when the config has one."""
    for listener in envoy["static_resources"]["listeners"]:
        if listener.get("name") == "envoy_admin_read":
            address = listener["address"]["socket_address"]
            return f"http://{address['address']}:{address['port_value']}"
    return None


def _print_banner(config, supervisor, base: str, demo: list[tuple[str, str, str]],
                  admin_read: str | None = None, logs: tuple[Path, Path] | None = None) -> None:
    print(f"LLM gateway is up ({supervisor.worker_count} ext_proc workers, config {config.version})")
    print(f"  Config in force:            {os.path.abspath(config.path)}  (edit a copy and pass it with "
          "--config; it reloads when saved)")
    print(f"  OpenAI-compatible endpoint: {base}")
    print(f"  Anthropic Messages API:     {base.removesuffix('/v1')}  (POST /v1/messages; Claude Code: "
          "ANTHROPIC_BASE_URL)")
    for profile in config.mcp.profiles:
        print(f"  MCP tools (streamable HTTP): {base.removesuffix('/v1')}/mcp/{profile}")
    print(f"  ext_proc admin:             http://{config.server.admin_address}  (/metrics /healthz /readyz)")
    if config.console is not None:
        print(f"  Console:                    http://{config.console.listen}  (sign in with a console token)")
        for role, token, source in config.console.tokens:
            if source == "inline":           # written in the config itself: a demo's (env and files never shown)
                print(f"    demo {role.replace('_', ' ')} token: {token.reveal()}")
    print(f"  Envoy admin:                {supervisor.envoy_admin}  (owner-only socket)")
    if admin_read:
        print(f"  Envoy admin, read-only:     {admin_read}  (GET /stats /ready /clusters ...)")
    if demo:
        print("  Demo keys (plain text in the quickstart config, demo only):")
        for key, team, models in demo:
            print(f"    {key:<16} team {team:<10} models {models}")
    if logs:
        print(f"  Logs:                       {logs[0]}  (a JSON line per call)")
        print(f"                              {logs[1]}  (Envoy, its access log, warnings; --log: here instead)")
    print(f"Try: curl {base}/chat/completions -H 'Authorization: Bearer {demo[0][0] if demo else '<key>'}' "
          "-H 'content-type: application/json' "
          "-d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'")
    print("Ctrl-C stops everything.", flush=True)


def _demo_keys(path: str) -> list[tuple[str, str, str]]:
    with open(path, encoding="utf-8") as handle:
        raw = safe_load(handle)
    return [(k["key"], k.get("team", ""), k.get("models", "*") if isinstance(k.get("models"), str)
             else ", ".join(k.get("models", []))) for k in raw.get("keys", []) if "key" in k]
