"""The most one answer of a model may generate, as a budget reserves it for a call that
sets no output cap: the shipped table, the config's `max_output_tokens:`, a translation's
default, and a model nobody gave a maximum for."""

from __future__ import annotations

import yaml
from gateway_stack import quickstart_config

from extproc.api.prices import UNKNOWN_MAX_OUTPUT_TOKENS, shipped_max_output
from extproc.config.filter_config import load_config


def config(tmp_path, models: dict):
    raw = quickstart_config()
    raw["models"].update(models)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(str(path))


def test_the_shipped_maximum_by_name_and_alias():
    assert shipped_max_output("gpt-4o-mini") == shipped_max_output("gpt-4o-mini-2024-07-18") == 16_384
    assert shipped_max_output("claude-sonnet-4-6") == 64_000
    assert shipped_max_output("my-own-llama") is None


def test_ceilings_of_the_quickstarts_models_and_the_configs_own(tmp_path):
    loaded = config(tmp_path, {
        "llama": {"backends": [{"provider": "mock", "model": "llama-3-70b"}], "price": {"input": 1, "output": 1}},
        "llama-known": {"backends": [{"provider": "mock", "model": "llama-3-70b", "max_output_tokens": 8000}],
                        "price": {"input": 1, "output": 1}},
        "both": {"max_output_tokens": 2000, "price": {"input": 1, "output": 1},
                 "backends": [{"provider": "mock", "model": "llama-3-70b"},
                              {"provider": "mock-backup", "model": "gpt-4o", "name": "other"}]},
    })
    assert loaded.model("gpt-4o-mini").output_ceiling("openai") == (16_384, True)
    assert loaded.model("gpt-4o-mini").output_ceiling("anthropic") == (16_384, True)
    # A chat caller's call to an Anthropic backend gets its provider's default_max_tokens.
    claude = loaded.model("claude-sonnet-4-6")
    assert claude.output_ceiling("anthropic") == (64_000, True)
    assert claude.output_ceiling("openai") == (claude.primary.provider.default_max_tokens, True)
    assert loaded.model("llama").output_ceiling("openai") == (UNKNOWN_MAX_OUTPUT_TOKENS, False)
    assert loaded.model("llama-known").output_ceiling("openai") == (8000, True)
    # The model's figure for backends without their own; the largest backend's counts.
    assert loaded.model("both").output_ceiling("openai") == (2000, True)
