"""Agent runs: the calls of one agent task, recognised from what agents already send.

Holds what every part of the gateway agrees a run is: the run identity (identity.py:
which headers name a run, per client, and the bounded, key-scoped id made from them),
the bounds of loop stopping (loops.py) and a worker's ledger of its runs' counters
(ledger.py). Client knowledge (Claude Code's, Codex CLI's header names) lives here and
nowhere else.

Pure functions over plain values: it must not import the pipeline, stages, store,
config or runtime (they import it), nor anything that does I/O."""

from .identity import CLIENTS, RUN_HEADER, Run, client_of, recognise  # noqa: F401
