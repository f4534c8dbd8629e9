"""Where a local gateway listens, and `extproc up --port-offset N`.

A port offset moves by N every loopback port of the gateway's own listeners and its
mocks' that a config names (the admin and console listeners, the mock provider's and demo
MCP servers' listeners and simulated vLLM replicas, providers' and MCP servers' loopback URLs, the aggregator's
addresses, the cache's gateway URL; not a store's, a trace receiver's or an identity
provider's), so a second quickstart with its
own state dir runs beside the first. It is read from the environment (`LLMGW_PORT_OFFSET`,
which `extproc up` sets for itself and its children) when the config is loaded, so every
process of the gateway (workers, mock, aggregator, console) and every reload sees the same
ports: the config file itself stays as written.

Also the check every `extproc up` makes before it starts anything: each port it is about to
listen on is free, else one line naming the port, what would listen there, and the flag
that moves them all.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any, Iterable

PORT_OFFSET_ENV = "LLMGW_PORT_OFFSET"
MAX_OFFSET = 50000

# A loopback address, with or without a scheme, and what follows its port.
_LOOPBACK = re.compile(r"^(?P<head>(?:[a-z][a-z0-9+.-]*://)?(?:[^@/]*@)?(?:127\.0\.0\.1|localhost|\[::1\])):"
                       r"(?P<port>\d{1,5})(?P<tail>(?:[/?#].*)?)$", re.IGNORECASE | re.DOTALL)
# Where a config holds bare port numbers (the mock's listeners).
# (A simulated vLLM pool's replica i listens on its port + i: the pool's port moves, they follow.)
_PORT_LISTS = (("mock_provider", "listeners"), ("mock_provider", "mcp_listeners"), ("mock_provider", "vllm_pools"))


def port_offset() -> int:
    """The offset in force (0: none). An unreadable value is 0: `extproc up` checks it."""
    raw = os.environ.get(PORT_OFFSET_ENV, "")
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= MAX_OFFSET else 0


def shift_port(port: int, offset: int) -> int:
    return port + offset if 0 < port + offset < 65536 else port


def shift_address(text: str, offset: int) -> str:
    """`text` with its loopback port moved by `offset` (any other text as it is)."""
    match = _LOOPBACK.match(text)
    if match is None or not offset:
        return text
    return f"{match['head']}:{shift_port(int(match['port']), offset)}{match['tail']}"


# The sections whose loopback addresses are the gateway's own listeners, or its mocks' (a
# store, a trace receiver or an identity provider on loopback is not the gateway's: it stays).
_MOVED_SECTIONS = ("server", "mock_provider", "providers", "mcp", "console", "cache")


def shift_config(data: dict, offset: int) -> None:
    """Moves, in place, the loopback ports of a config as loaded from YAML."""
    if not offset:
        return
    for section in _MOVED_SECTIONS:
        if isinstance(data.get(section), (dict, list)):
            _shift_strings(data[section], offset)
    for section, field in _PORT_LISTS:
        listeners = (data.get(section) or {}).get(field) if isinstance(data.get(section), dict) else None
        for listener in listeners if isinstance(listeners, list) else ():
            if isinstance(listener, dict) and type(listener.get("port")) is int:
                listener["port"] = shift_port(listener["port"], offset)


def _shift_strings(node: Any, offset: int) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        if isinstance(value, str):
            moved = shift_address(value, offset)
            if moved is not value:
                node[key] = moved
        elif isinstance(value, (dict, list)):
            _shift_strings(value, offset)


def first_port_in_use(listeners: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """(what, address) of the first `host:port` something already listens on."""
    for what, address in listeners:
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            continue
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
            except OSError:
                return what, address
    return None
