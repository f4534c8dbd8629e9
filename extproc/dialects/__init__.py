"""Everything that differs between the API dialects callers and providers speak.

A `Dialect` is an API family (OpenAI's, Anthropic's): how its errors and model lists
look, which headers its providers take. A `Codec` is one endpoint of it (chat,
completions, embeddings, responses, messages, count_tokens, ...): what its requests,
answers and stream events hold, and where a stream carries generated text. Each dialect's
knowledge is in its own module; the stages, guardrails, errors and the log line ask
`codec_of(kind)` and `dialect_named(name)` and never compare a dialect's or an endpoint's
name (tests/test_layout.py holds every module outside this package and mock/ to that:
api/ has a reader per endpoint shape, which each codec calls as its own).

A folder per API family holds all of that family's knowledge: openai/ (Chat
Completions, Completions, Embeddings, the Responses API, Azure's paths), anthropic/
(Messages), google/ (the Gemini API, Vertex AI's Gemini), bedrock/ (Converse), each with
its `dialect.py` (the Dialect and its codecs) and its requests, answers and streams. Here,
beside them: the contracts (base.py), the conversation model, the request parts, the
model lists and stored responses, and the table below. A new family is a new folder, its
codecs added to the table, a mock of its provider (mock/) and a provider type (config/).

Translation goes through one conversation model (conversation.py): a codec that
`translates` decodes its requests, answers, stream events and errors into the model and
encodes them from it, in its family's modules (request, answer, stream); translate/ joins a
caller's codec to a provider's.

Imports api only: nothing of the config, pipeline, stages or transport.
"""

from __future__ import annotations

from .anthropic.dialect import ANTHROPIC, CountTokens, Messages
from .base import Codec, Dialect, TextPiece
from .bedrock.dialect import BEDROCK, Converse
from .google.dialect import GEMINI, CountContentTokens, GenerateContent
from .google.gemini_embed import BatchEmbedContents, EmbedContent
from .openai.dialect import OPENAI, Chat, Completions, Embeddings
from .resources import ModelList, OneModel, OwnUsage, StoredResponse
from .openai.responses import RESPONSES_ONLY, Responses

__all__ = ["ANTHROPIC", "OPENAI", "Codec", "Dialect", "Embeddings", "TextPiece", "codec_of", "dialect_named", "CODECS",
           "DIALECTS"]

# Every endpoint kind the gateway serves, and its codec.
CODECS: dict[str, Codec] = {codec.kind: codec for codec in (
    Chat(), Completions(), Embeddings(), Responses(), Messages(), CountTokens(), GenerateContent(), CountContentTokens(), EmbedContent(),
    BatchEmbedContents(), Converse(), ModelList(),
    OneModel(), OwnUsage(),
    StoredResponse("response"), StoredResponse("response_cancel"), StoredResponse("response_input_items"))}
DIALECTS: dict[str, Dialect] = {dialect.name: dialect for dialect in (OPENAI, ANTHROPIC, RESPONSES_ONLY, GEMINI, BEDROCK)}

# Every dialect's account headers (Dialect.account_headers), withheld from every provider,
# not only from those of their own dialect: Vertex AI serves Claude in Anthropic's dialect
# and still bills the project x-goog-user-project names, Bedrock serves it with AWS's
# headers, Azure speaks OpenAI's. A header choosing an account at one platform means
# nothing to another, so withholding it everywhere costs no caller anything.
ACCOUNT_HEADERS = frozenset().union(*(dialect.account_headers for dialect in DIALECTS.values()))
ACCOUNT_HEADER_PREFIXES = tuple(sorted({prefix for dialect in DIALECTS.values()
                                        for prefix in dialect.account_header_prefixes}))
API_HEADERS = frozenset().union(*(dialect.api_headers for dialect in DIALECTS.values()))


def codec_of(kind: str) -> Codec:
    return CODECS[kind]


def dialect_named(name: str) -> Dialect:
    return DIALECTS[name]


def dialect_for_path(path: str) -> str:
    """The dialect of a path the gateway does not serve, for its 404."""
    if path.startswith("/v1beta/"):
        return GEMINI.name
    return ANTHROPIC.name if path.startswith("/v1/messages") else OPENAI.name
