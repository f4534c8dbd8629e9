"""A config's guardrail detectors made and their automata built on a corpus
(guardrails/warm.py), in a process that forks workers: the fork server (preloaded.py)
and the tests' warm template (fork_template_server.py). Nothing runs at import."""

from __future__ import annotations

from ..config.filter_config import load_config
from ..guardrails.warm import warm


def warm_detectors(path: str, strict_credentials: bool = True) -> None:
    """Makes (and keeps) the config's detectors, as each worker's load would, and builds
    their automata for every child to start with."""
    try:
        config = load_config(path, strict_credentials=strict_credentials)
    except Exception:          # noqa: BLE001  the children load it again and say what is wrong
        return
    warm(config.guardrails)
