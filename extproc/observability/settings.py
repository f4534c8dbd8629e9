"""What the operator chooses to see: tag headers, per-key series, and their bounds.

    observability:
      tag_labels: [agent]          # x-gateway-tag-agent becomes a metric label
      max_tag_values: 50           # distinct values per tag before "__overflow__"
      per_key_metrics: false       # per-key/user request and token series
      max_key_series: 200          # distinct keys/users before "__overflow__"
      max_model_values: 50         # distinct "<provider>/<model>" names callers chose
                                   # (models not under `models:`) before "__overflow__"

Tags are always recorded on the log line; only allow-listed ones reach metrics,
and every label is capped, so Prometheus never drowns in series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..yamltree import Node
from .tracing import TracingSettings, parse_tracing

TAG_HEADER_PREFIX = "x-gateway-tag-"
OVERFLOW = "__overflow__"
MAX_TAGS_PER_REQUEST = 16
MAX_TAG_LENGTH = 128


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    tag_labels: frozenset[str] = frozenset()
    max_tag_values: int = 50
    per_key_metrics: bool = False
    max_key_series: int = 200
    max_model_values: int = 50
    tracing: TracingSettings | None = None       # one span per call, over OTLP (tracing.py)


def parse_observability(node: Node) -> ObservabilitySettings:
    node.only_keys("tag_labels", "max_tag_values", "per_key_metrics", "max_key_series", "max_model_values",
                   "tracing")
    return ObservabilitySettings(
        tag_labels=frozenset(n.str().lower() for n in node.get("tag_labels").elements()),
        max_tag_values=node.get("max_tag_values").number(50, integer=True, minimum=1),
        per_key_metrics=node.get("per_key_metrics").bool(False),
        max_key_series=node.get("max_key_series").number(200, integer=True, minimum=1),
        max_model_values=node.get("max_model_values").number(50, integer=True, minimum=1),
        tracing=parse_tracing(node.get("tracing")),
    )


def request_tags(headers: dict[str, str], names: Iterable[str] | None = None) -> dict[str, str]:
    """The caller's x-gateway-tag-* tags. `names`: the headers' names that may hold them,
    in the headers' order (those of the gateway's prefix, found once by the caller);
    None: every header's."""
    tags = {}
    for name in headers if names is None else names:
        if name.startswith(TAG_HEADER_PREFIX) and len(tags) < MAX_TAGS_PER_REQUEST:
            tags[name[len(TAG_HEADER_PREFIX):][:64]] = headers[name][:MAX_TAG_LENGTH]
    return tags


class BoundedLabel:
    """Label values as seen, until `cap` distinct ones; then OVERFLOW (per process)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str, cap: int) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= cap:
            return OVERFLOW
        self._seen.add(value)
        return value
