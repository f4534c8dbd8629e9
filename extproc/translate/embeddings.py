"""An embeddings call translated: a caller's embeddings endpoint (Google's
batchEmbedContents, say) served by another dialect's embeddings model (OpenAI's
text-embedding-3-small). The caller's codec reads the request into the texts to embed
(dialects/embedding.py) and writes the vectors back in its shape; the provider's writes
the request it takes and reads its answer. Errors go through each dialect's generating
codec, which knows its dialect's error shapes. Embeddings never stream.
"""

from __future__ import annotations

from typing import Any

from ..dialects import codec_of, dialect_named
from ..dialects.base import Codec
from ..dialects.conversation import Notes, Target


class EmbeddingBridge:
    """A caller's embeddings endpoint (`caller_codec`) served by a provider's (`provider_codec`)."""
    __slots__ = ("caller", "caller_codec", "provider", "provider_codec", "provider_kind")

    def __init__(self, caller: str, caller_codec: Codec, provider: str, provider_codec: Codec) -> None:
        self.caller, self.caller_codec = caller, caller_codec
        self.provider, self.provider_codec = provider, provider_codec
        self.provider_kind = provider_codec.kind

    def request(self, body: dict, target: Target, notes: Notes) -> dict:
        """The caller's body as the provider takes it, for `target.model`; raises Refused."""
        return self.provider_codec.encode_embeddings(self.caller_codec.decode_embeddings(body, notes), target.model)

    def response(self, body: dict, request: dict, notes: Notes | None = None) -> dict:
        """The provider's answer as the caller reads it (`request`: the caller's body)."""
        return self.caller_codec.encode_embedded(self.provider_codec.decode_embedded(body), request)

    def error(self, status: int, body: Any) -> tuple[int, bytes]:
        """A provider's error in the caller's shape and status."""
        caller = codec_of(dialect_named(self.caller).generation_kind)
        provider = codec_of(dialect_named(self.provider).generation_kind)
        return caller.encode_error(status, provider.decode_error(status, body))
