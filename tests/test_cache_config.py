"""The `cache` section: rules parsed into typed settings, bad values refused with their
place, a rule naming no model of the config warned of; which rule a call falls under and
the scope it shares entries in."""

from __future__ import annotations

import pytest
import yaml
from gateway_stack import quickstart_config

from extproc.config.filter_config import VirtualKey, load_config
from extproc.yamltree import ConfigError


def _load(tmp_path, cache: dict):
    config = quickstart_config()
    config.pop("identity")
    config["cache"] = cache
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def _key(team: str = "research", user: str = "alice") -> VirtualKey:
    return VirtualKey(id="k1", sha256=b"", user=user, team=team, models=None)


def test_rules_and_their_defaults(tmp_path):
    config = _load(tmp_path, {"max_bytes": 4096, "rules": [
        {"models": ["gpt-4o-mini"], "teams": ["research"]},
        {"models": ["anthropic/*", "gpt-4o"], "scope": "global", "ttl_s": 60, "tools": True,
         "max_temperature": 0.5, "max_entry_bytes": 100, "count_hits_as_requests": False}]})
    first, second = config.cache.rules
    assert (first.ttl_s, first.scope, first.max_entry_bytes, first.tools, first.max_temperature) == \
        (3600, "team", 262_144, False, 0.0)
    assert config.cache.max_bytes == 4096 and config.cache.enabled
    assert config.cache.rule_for("gpt-4o-mini", "research") is first
    assert config.cache.rule_for("gpt-4o-mini", "support") is None
    assert config.cache.rule_for("anthropic/claude-haiku-4-5", "support") is second
    assert not second.count_hits_as_requests and second.scope_value(_key()) == "global"


def test_scopes_never_mix_callers(tmp_path):
    rule = _load(tmp_path, {"rules": [{"models": ["*"]}]}).cache.rules[0]
    assert rule.scope_value(_key("research")) == "team:research"
    assert rule.scope_value(_key("")) == "key:k1"                  # no team: its own key only
    for scope, expected in (("user", "user:alice"), ("key", "key:k1"), ("global", "global")):
        assert type(rule)(models=("*",), teams=None, scope=scope).scope_value(_key()) == expected
    assert type(rule)(models=("*",), teams=None, scope="user").scope_value(_key(user="")) == "key:k1"


def test_without_a_metering_section_the_cache_is_metered_by_team_and_model(tmp_path):
    config = quickstart_config()
    config.pop("identity")
    config.pop("metering")
    config["cache"] = {"rules": [{"models": ["gpt-4o-mini"]}]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    sets = {s.dimensions: s for s in load_config(str(path)).metering.sets}
    assert ("team", "model", "cache") in sets
    assert [limit.kind for limit in sets[("team", "model", "cache")].limits][-1] == "saved_usd"
    assert "saved_usd" not in [limit.kind for limit in sets[("key", "user", "team", "model", "backend")].limits]


@pytest.mark.parametrize("cache, problem", [
    ({"rules": [{"teams": ["x"]}]}, "cache.rules[0].models"),
    ({"rules": [{"models": ["gpt-4o-mini"], "scope": "everyone"}]}, "cache.rules[0].scope"),
    ({"rules": [{"models": ["gpt-4o-mini"], "ttl_s": 0}]}, "cache.rules[0].ttl_s"),
    ({"rules": [{"models": ["gpt-4o-mini"], "colour": "blue"}]}, "cache.rules[0].colour"),
    ({"max_bytes": 10, "rules": []}, "cache.max_bytes"),
    ({"stampede_wait_s": "soon"}, "cache.stampede_wait_s"),
])
def test_bad_values_are_refused_with_their_place(tmp_path, cache, problem):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, cache)
    assert problem in str(error.value)


def test_a_rule_naming_no_model_of_the_config_is_warned_of(tmp_path):
    config = _load(tmp_path, {"rules": [{"models": ["gpt-4o-mni", "anthropic/*"]}]})
    assert any("gpt-4o-mni" in warning and "nothing is cached" in warning for warning in config.warnings)
    assert not any("anthropic/*" in warning for warning in config.warnings)
