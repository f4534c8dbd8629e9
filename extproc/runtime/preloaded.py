"""What the fork server (forked.py) holds before it forks a child, besides the command
line and the mock's routes (when the config runs the mock), which it imports first: the
modules every child imports, the tokenizers the config's models count with (each counted
once), the request bodies' compiled checkers (api/schemas.py), and the config's guardrail
detectors (guardrails/config.py keeps them per rule; they hold no per-request state),
their automata built on a corpus (guardrails/warm.py). Imported only there.

Importing this module is all it does; nothing here starts a thread, a loop or a socket,
which a fork would not carry into the child."""

from __future__ import annotations

import ctypes
import gc
import os

import uvloop  # noqa: F401

from ..api.schemas import compile_all
from ..api.tokens import get_encoding
from ..guardrails import fold, hold, injection, pii  # noqa: F401  (tables built at import: ~0.8 s)
from ..guardrails.screen import every_code_point
from . import mcp_aggregator_front, worker  # noqa: F401
from .detectors_warmed import warm_detectors
from .forked import CONFIG_ENV, ENCODINGS_ENV



def prepare() -> None:
    """The tokenizers and the config's detectors the environment names (again in a fork
    server forked from a warm template, fork_template.py, with its requester's)."""
    for encoding in filter(None, os.environ.get(ENCODINGS_ENV, "").split(",")):
        # A tokenizer's first count builds what it counts with (~7 ms): here, once.
        get_encoding(encoding).count("warm")
    if path := os.environ.get(CONFIG_ENV):
        warm_detectors(path)
    # The request bodies' checkers, which each worker would compile on its first body of
    # each endpoint (~15 ms in that call).
    compile_all()
    # The code-point table the detectors were built from (4.4 MB) is not read again unless
    # a reload brings a new pattern, which builds it anew.
    every_code_point.cache_clear()
    gc.collect()
    release_freed_heap()
    # What is loaded by now lives as long as the children: out of the collector's sight,
    # so a child's collections neither walk it nor write its pages (copy-on-write).
    gc.freeze()


def release_freed_heap() -> None:
    """Hand the heap's free pages back to the kernel before forking. The imports and the
    detectors' construction free ~13 MB of temporaries that glibc keeps (the workers'
    trim threshold is high on purpose: worker_env.py), and every child would map them:
    each worker's resident set was that much larger (bench/memory.py)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):      # not glibc: nothing to hand back this way
        pass


prepare()
