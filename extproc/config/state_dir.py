"""Where the gateway keeps its state by default (budgets, spend, keys, logs of `up`).
Its own module: the `extproc` command shows it in its help without loading the config code."""

from __future__ import annotations

import os


def default_state_dir() -> str:
    """`extproc up --state-dir` sets LLMGW_STATE_DIR for its workers."""
    return os.environ.get("LLMGW_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "llm-gateway")
