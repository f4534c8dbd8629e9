"""What a stage is, as the runner calls it: the base class and the answer a stage may give
itself. The stages themselves live in extproc.stages; the pipeline knows none of them."""

from __future__ import annotations



class ImmediateAnswer(Exception):
    """A successful answer the gateway gives itself (e.g. GET /v1/models)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Stage:
    name = "stage"

