"""What a stage is, as the runner calls it: the base class and the answer a stage may give
itself. The stages themselves live in extproc.stages; the pipeline knows none of them."""

from __future__ import annotations

# The hooks a stage may have, in the order the runner calls them over a call's life:
# each runs once per ext_proc message of its phase (the body hooks once per chunk), done
# once the last reply is out. A hook is a plain function or a coroutine function; outside
# the body phases (whose hooks return a chunk), a plain one may return an awaitable when
# this call needs a wait (most calls then pay no coroutine), else None.
HOOKS = ("request_headers", "request_body", "response_headers", "response_body", "response_trailers", "done")


class ImmediateAnswer(Exception):
    """A successful answer the gateway gives itself (e.g. GET /v1/models)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Stage:
    """One concern of a call's handling. `reads` and `writes` name the Call fields the
    stage shares with others (every stage may read `config` and add to `reply`); what it
    keeps for itself is its own state object (`call.own(...)`). tests/test_stage_state.py
    holds both to the code, and the pipelines' order to them."""

    name = "stage"
    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()

    @classmethod
    def hooks(cls) -> tuple[str, ...]:
        return tuple(hook for hook in HOOKS if hasattr(cls, hook))
