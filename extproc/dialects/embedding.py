"""What an embeddings call holds whatever its dialect: the texts to embed, the dimensions
asked for, and the vectors and usage of its answer. An embeddings codec of one dialect
reads a caller's request into `EmbeddingRequest` and writes an `EmbeddingAnswer` back in
its shape; one of another dialect writes the request for its provider and reads the
provider's answer (translate/embeddings.py joins the two)."""

from __future__ import annotations

from dataclasses import dataclass

from ..api.usage import Usage


@dataclass(slots=True)
class EmbeddingRequest:
    texts: list[str]                 # one vector per text, in this order
    dimensions: int | None = None    # None: the model's own


@dataclass(slots=True)
class EmbeddingAnswer:
    vectors: list[list[float]]       # one per text, in the request's order
    usage: Usage | None = None
