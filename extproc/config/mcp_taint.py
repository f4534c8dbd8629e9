"""What the `mcp` section says of tools' risk across an agent run: each tool's labels and
what the gateway does with `egress` tools once a run is tainted.

    mcp:
      taint:
        egress: hide                 # hide: egress tools left out of tools/list and refused on
                                     # tools/call once the run read private data AND took in
                                     # untrusted content; approval: refused unless the caller
                                     # names the tool in the approval header
        approval_header: x-gateway-approve-tool   # "send_email" or "a,b" or "*"
        ttl_hours: 24                # how long a run's taint is remembered after it was set
        model_tools:                 # tools the model asks the agent to run (by name)
          Bash: [reads_private, egress]
          WebFetch: [untrusted_content]
      servers:
        demo:
          url: ...
          labels:                    # the server's tools ("*": every tool of the server)
            lookup_contact: [reads_private]
            fetch_note: [untrusted_content]
            send_email: [egress]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..yamltree import Node

READS_PRIVATE = "reads_private"
UNTRUSTED_CONTENT = "untrusted_content"
EGRESS = "egress"
LABELS = (READS_PRIVATE, UNTRUSTED_CONTENT, EGRESS)
EVERY_TOOL = "*"
NO_LABELS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TaintPolicy:
    egress: str = "hide"                             # hide | approval
    approval_header: str = "x-gateway-approve-tool"
    ttl_seconds: float = 86_400.0
    model_tools: Mapping[str, frozenset[str]] = field(default_factory=dict)


def labels_of(labels: Mapping[str, frozenset[str]], tool: str) -> frozenset[str]:
    """A tool's labels: its own entry's, with the server's `*` entry's added."""
    own = labels.get(tool, NO_LABELS)
    every = labels.get(EVERY_TOOL)
    return own | every if every else own


def parse_labels(node: Node) -> dict[str, frozenset[str]]:
    """`{tool: [label, ...]}`; an unknown label is a config error (a typo would leave an
    egress tool unguarded)."""
    if node.missing or node.value is None:
        return {}
    labels = {}
    for tool, entry in node.items():
        chosen = []
        for item in entry.elements():
            label = item.str()
            if label not in LABELS:
                item.fail(f"unknown tool label {label!r}: one of {', '.join(LABELS)}")
            chosen.append(label)
        labels[tool] = frozenset(chosen)
    return labels


def parse_taint(node: Node) -> TaintPolicy:
    if node.missing or node.value is None:
        return TaintPolicy()
    node.only_keys("egress", "approval_header", "ttl_hours", "model_tools")
    header = node.get("approval_header").str("x-gateway-approve-tool").lower()
    if not header.isascii() or not header or not all(ch.isalnum() or ch == "-" for ch in header):
        node.get("approval_header").fail("a header name: letters, digits and '-'")
    return TaintPolicy(egress=node.get("egress").choice(("hide", "approval"), "hide"),
                       approval_header=header,
                       ttl_seconds=node.get("ttl_hours").number(24, minimum=0.01) * 3600.0,
                       model_tools=parse_labels(node.get("model_tools")))
