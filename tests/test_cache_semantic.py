"""The semantic cache's parts, each alone: a question's anchors and partition, a
worker's vector index, the vectors' stores (SQLite, and a real Redis), the embedding
answer read back, the mock's embedding model and the `semantic` rule's config."""

from __future__ import annotations

import asyncio
import base64
import struct
import time

import numpy as np
import orjson
import pytest
import yaml
from gateway_stack import quickstart_config

from extproc.config.filter_config import load_config
from extproc.dialects import Embeddings
from extproc.mock.embedding_model import embed
from extproc.stages.cache.semantic import anchors
from extproc.store.cache_vectors import RedisVectors, SQLiteVectors
from extproc.store.response_cache import SQLiteCache
from extproc.store.semantic_index import SemanticIndex
from extproc.yamltree import ConfigError


@pytest.mark.parametrize("question, expected", [
    ("Convert 10 miles to kilometers.", "10"),
    ("Is it not safe to run v1.2.3 on port 8080?", "not v1.2.3 8080"),
    ("Why doesn't my build start?", "doesn't start"),
    ("Sort these in DESCENDING order, newest first", "descending newest first"),
    ("What is the capital of France?", ""),
])
def test_anchors_are_the_numbers_negations_and_direction_words_in_order(question, expected):
    assert anchors(question) == expected


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


class _Rows:
    """A vectors store with nothing new to give (the index's own additions only)."""
    def since(self, part, position):
        return []


def test_the_index_finds_the_nearest_live_vector_of_its_partition():
    index, store = SemanticIndex(), _Rows()
    later = time.time() + 60
    index.add("p", "a", _unit(1, 0, 0), later)
    index.add("p", "b", _unit(0.9, 0.1, 0), later)
    index.add("q", "c", _unit(0, 0, 1), later)
    index.add("p", "gone", _unit(0, 1, 0), time.time() - 1)           # past its end
    found = asyncio.run(index.nearest(store, "p", _unit(1, 0.05, 0)))
    assert found[0] == "a" and 0.99 < found[1] <= 1.0
    assert asyncio.run(index.nearest(store, "p", _unit(0, 1, 0)))[0] != "gone"
    assert asyncio.run(index.nearest(store, "r", _unit(1, 0, 0))) is None     # an empty partition


def test_the_index_grows_and_drops_its_least_used_partitions_past_its_cap():
    index, store = SemanticIndex(max_bytes=50 * 8 * 4), _Rows()
    later = time.time() + 60
    rng = np.random.default_rng(1)
    for i in range(40):
        index.add("old", f"o{i}", _unit(*rng.standard_normal(8)), later)
    for i in range(40):
        index.add("new", f"n{i}", _unit(*rng.standard_normal(8)), later)
    asyncio.run(index.nearest(store, "new", _unit(*rng.standard_normal(8))))      # trims
    assert asyncio.run(index.nearest(store, "old", _unit(*rng.standard_normal(8)))) is None
    assert asyncio.run(index.nearest(store, "new", _unit(*rng.standard_normal(8))))[0].startswith("n")


def test_sqlite_vectors_are_read_on_from_a_position_and_purged_by_scope(tmp_path):
    path = str(tmp_path / "cache.sqlite3")
    SQLiteCache(path, 1 << 20).close()                  # the entries' file, as the worker makes it
    writer, reader = SQLiteVectors(path), SQLiteVectors(path)     # two workers
    index = SemanticIndex()
    writer.add("p", "d1", "team:a", "m", _unit(1, 0).astype("<f4").tobytes(), 60)
    assert asyncio.run(index.nearest(reader, "p", _unit(1, 0)))[0] == "d1"
    writer.add("p", "d2", "team:b", "m", _unit(0, 1).astype("<f4").tobytes(), 60)
    assert asyncio.run(index.nearest(reader, "p", _unit(0, 1)))[0] == "d2"      # only the new row read
    assert len(reader.since("p", None)) == 2 and len(reader.since("p", reader.since("p", None)[0][0])) == 1
    assert writer.purge(scope="team:a") == 1
    assert [row[1] for row in reader.since("p", None)] == ["d2"]
    writer.close()
    reader.close()


def test_sqlite_vectors_whose_answers_are_gone_are_swept(tmp_path):
    path = str(tmp_path / "cache.sqlite3")
    entries = SQLiteCache(path, 1 << 20)
    entries.put("kept", "team:a", "m", b"{}\n{}", 60)
    entries.flush()
    vectors = SQLiteVectors(path)
    vectors.add("p", "kept", "team:a", "m", _unit(1, 0).astype("<f4").tobytes(), 60)
    vectors.add("p", "evicted", "team:a", "m", _unit(0, 1).astype("<f4").tobytes(), 60)
    assert [row[1] for row in vectors.since("p", None)] == ["kept", "evicted"]
    vectors._swept = 0                                  # a minute later, a fresh orphan (its answer
    vectors.add("p", "pending", "team:a", "m", _unit(1, 1).astype("<f4").tobytes(), 60)   # not yet written) kept
    assert {row[1] for row in vectors.since("p", None)} == {"kept", "evicted", "pending"}
    with vectors._db:
        vectors._db.execute("UPDATE vectors SET created = created - 120")
    vectors._swept = 0
    vectors.add("p", "kept", "team:a", "m", _unit(1, 0).astype("<f4").tobytes(), 60)
    assert {row[1] for row in vectors.since("p", None)} == {"kept"}
    vectors.close()
    entries.close()


def test_redis_vectors_are_shared_read_on_and_purged(redis_url):
    async def scenario():
        writer, reader = RedisVectors(redis_url), RedisVectors(redis_url)
        index = SemanticIndex()
        part = f"p{time.time_ns()}"
        await writer.add(part, "d1", "team:a", "m", _unit(1, 0).astype("<f4").tobytes(), 60)
        await writer.add(part, "d2", "team:b", "m", _unit(0, 1).astype("<f4").tobytes(), 60)
        first = await index.nearest(reader, part, _unit(1, 0.1))
        rows = await reader.since(part, None)
        later = await reader.since(part, rows[0][0])
        purged = await writer.purge(scope="team:a")
        left = await reader.since(part, None)
        await writer.close()
        await reader.close()
        return first, rows, later, purged, left
    first, rows, later, purged, left = asyncio.run(scenario())
    assert first[0] == "d1" and [r[1] for r in rows] == ["d1", "d2"] and [r[1] for r in later] == ["d2"]
    assert purged >= 1 and [r[1] for r in left] == ["d2"]


def test_an_embedding_answer_is_read_in_either_encoding_and_garbage_is_none():
    floats = [0.25, -0.5, 1.0]
    as_base64 = base64.b64encode(struct.pack("<3f", *floats)).decode()
    for embedding in (floats, as_base64):
        data = Embeddings.vector_in(orjson.dumps({"data": [{"embedding": embedding}]}))
        assert list(np.frombuffer(data, "<f4")) == floats
    for garbage in (b"{}", b"[1]", b"not json", orjson.dumps({"data": [{"embedding": "@@"}]}),
                    orjson.dumps({"data": [{"embedding": ["x"]}]}), orjson.dumps({"data": []})):
        assert Embeddings.vector_in(garbage) is None
    request = orjson.loads(Embeddings.request_for("text-embedding-3-small", "hi", 512))
    assert request == {"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64",
                       "dimensions": 512}


def test_the_mock_model_places_paraphrases_close_and_keeps_cosines_at_any_width():
    question, paraphrase, other = "How do I reset my password?", "What is the way to reset my password?", \
        "Who founded Apple?"
    native = embed([question, paraphrase, other])
    wide = embed([question, paraphrase, other], 1536)
    assert native.shape == (3, 384) and wide.shape == (3, 1536)
    assert native[0] @ native[1] > 0.9 and native[0] @ native[2] < 0.5
    assert abs(float(native[0] @ native[1]) - float(wide[0] @ wide[1])) < 1e-5
    assert np.allclose(np.linalg.norm(wide, axis=1), 1, atol=1e-5)


def _load(tmp_path, semantic):
    config = quickstart_config()
    config.pop("identity")
    config["cache"] = {"rules": [{"models": ["gpt-4o-mini"], "semantic": semantic}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def test_a_semantic_rule_and_its_defaults(tmp_path):
    rule = _load(tmp_path, {"embedding_model": "text-embedding-3-small"}).cache.rules[0].semantic
    assert (rule.embedding_model, rule.min_similarity, rule.dimensions, rule.timeout_s) == \
        ("text-embedding-3-small", 0.95, None, 1.0)


@pytest.mark.parametrize("semantic, message", [
    ({}, "semantic.embedding_model"),
    ({"embedding_model": "no-such-model"}, "not a model of this config"),
    ({"embedding_model": "text-embedding-3-small", "min_similarity": 1.5}, "at most 1"),
    ({"embedding_model": "text-embedding-3-small", "dimensions": 0}, "at least 1"),
    ({"embedding_model": "text-embedding-3-small", "colour": "red"}, "unknown key"),
    ({"embedding_model": "text-embedding-3-small", "timeout_s": 2}, "at most 1.5"),
])
def test_a_bad_semantic_rule_is_refused_with_its_place(tmp_path, semantic, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, semantic)


def test_keys_not_allowed_the_embedding_model_are_warned_of(tmp_path):
    """bob may call gpt-4o-mini only: a semantic rule on gpt-4o-mini never matches his
    questions (`extproc check` prints the warning); alice may call every model."""
    warnings = _load(tmp_path, {"embedding_model": "text-embedding-3-small"}).warnings
    assert any("keys bob may not call 'text-embedding-3-small'" in w for w in warnings), warnings
    assert not any("alice" in w for w in warnings)
