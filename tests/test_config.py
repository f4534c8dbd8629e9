"""Config parsing and `extproc check`: one clear line per problem, naming file and path."""

from __future__ import annotations

import subprocess
import sys

import pytest
from types import SimpleNamespace
import yaml
from gateway_stack import QUICKSTART_CONFIG, QUICKSTART_ENVOY, ROOT, quickstart_config
from warm_start import run_extproc

from extproc.api.usage import Usage
from extproc.config.filter_config import load_config
from extproc.yamltree import ConfigError, safe_load    # safe_load: libyaml, the Envoy config in a tenth of the time


def write(tmp_path, config: dict | str, name: str = "gateway.yaml"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return str(path)


def test_quickstart_parses_into_typed_objects():
    config = load_config(str(QUICKSTART_CONFIG))
    assert set(config.models) >= {"gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}
    bob = next(k for k in config.keys_by_hash.values() if k.id == "bob")
    assert bob.team == "support" and bob.may_use("gpt-4o-mini") and not bob.may_use("gpt-4o")
    assert "mock-provider-key" not in repr(config.providers["mock"])
    with pytest.raises(AttributeError):
        config.models["gpt-4o"].name = "changed"          # frozen


def _broken(edit):
    config = quickstart_config()
    edit(config)
    return config


BROKEN = [
    ("unknown model in allowlist", lambda c: c["keys"][1].update(models=["gpt-5"]),
     "keys[1].models[0]: unknown model 'gpt-5'"),
    ("unknown provider", lambda c: c["models"]["gpt-4o"]["backends"][0].update(provider="nope"),
     "models.gpt-4o.backends[0].provider: unknown provider 'nope'"),
    ("bad hash", lambda c: c["keys"].append({"id": "x", "key_sha256": "abc"}),
     "keys[2].key_sha256: must be 64 hex characters"),
    ("typo key", lambda c: c.update(modles={}), "modles: unknown key"),
    ("missing env credential", lambda c: c["providers"]["mock"].update(api_key={"env": "NOPE_XYZ"}),
     "providers.mock.api_key: environment variable NOPE_XYZ is not set"),
    ("bad strategy", lambda c: c["models"]["gpt-4o"].update(strategy="random"),
     "models.gpt-4o.strategy: must be one of: fallback, weighted"),
    ("banned patterns that do not combine", lambda c: c["guardrails"]["rules"].append(
        {"name": "words", "type": "banned", "patterns": ["(?P<x>a)", "(?P<x>b)"]}),
     "guardrails.rules[4].patterns: the patterns do not combine into one regex"),
    ("a banned pattern that can match no characters", lambda c: c["guardrails"]["rules"].append(
        {"name": "words", "type": "banned", "patterns": ["secret", "(?i)token-?(?=\\d)|x?"]}),
     "guardrails.rules[4].patterns[1]: matches the empty string: a banned pattern must match at least one character"),
    ("a banned lookahead alone", lambda c: c["guardrails"]["rules"].append(
        {"name": "words", "type": "banned", "patterns": ["(?=password)"]}),
     "guardrails.rules[4].patterns[0]: matches the empty string"),
    ("unknown scheduling policy", lambda c: c["server"].update(worker_scheduling="realtime"),
     "server.worker_scheduling: must be one of: normal, batch"),
    ("unknown transport", lambda c: c["server"].update(transport="quic"),
     "server.transport: must be one of: h2, grpc"),
    ("a credential header passed to a provider", lambda c: c["providers"]["mock"].update(
        pass_headers=["openai-project", "Authorization"]),
     "providers.mock.pass_headers[1]: a credential or the gateway's own header never passes"),
    ("a public URL with a path", lambda c: c["mcp"].update(public_urls=["https://gw.example.com/mcp"]),
     "mcp.public_urls[0]: an http:// or https:// URL of a host (and port), no path"),
    ("runs for no team", lambda c: c["runs"].update(teams=[]),
     "runs.teams: must list the teams whose calls are agent runs"),
    ("runs for a team that is not a name", lambda c: c["runs"].update(teams=["research", {"team": "x"}]),
     "runs.teams[1]: must be a string"),
    ("weighted model whose weights are all zero", lambda c: c["models"]["smart"].update(
        strategy="weighted", backends=[{**b, "weight": 0} for b in c["models"]["smart"]["backends"]]),
     "models.smart.backends: weights must not all be 0"),
]


def test_runs_govern_every_team_unless_some_are_named(tmp_path):
    everyone = load_config(write(tmp_path, quickstart_config())).runs
    assert everyone.teams is None and everyone.governs(SimpleNamespace(team="anyone"))
    config = quickstart_config()
    config["runs"]["teams"] = ["research"]
    named = load_config(write(tmp_path, config)).runs
    assert named.governs(SimpleNamespace(team="research")) and not named.governs(SimpleNamespace(team="support"))
    assert not named.governs(None)


def test_banned_patterns_with_global_flags_load_and_match(tmp_path):
    # docs/guardrails.md's example: a pattern opening with (?i) is one alternative among others.
    config = quickstart_config()
    config["guardrails"]["rules"].append({"name": "words", "type": "banned", "action": "block",
                                          "words": ["project-zeus"], "patterns": ["(?i)internal only"]})
    words = next(g for g in load_config(write(tmp_path, config)).guardrails.default if g.name == "words").detector
    assert [(f.start, f.end) for f in words.find("INTERNAL ONLY: project-zeus")] == [(0, 13), (15, 27)]


@pytest.mark.parametrize("name,edit,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_problems_name_file_and_path(tmp_path, name, edit, expected):
    path = write(tmp_path, _broken(edit))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert any(line == f"{path}: {expected}" or line.startswith(f"{path}: {expected}")
               for line in error.value.problems), error.value.problems


def test_every_problem_is_reported_at_once(tmp_path):
    config = _broken(lambda c: (c["keys"][1].update(models=["a"]), c["keys"][0].update(models=["b"])))
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, config))
    assert len(error.value.problems) == 2


def _check(*args):
    return run_extproc(["check", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_check_accepts_shipped_configs():
    for config, envoy in [(QUICKSTART_CONFIG, QUICKSTART_ENVOY),
                          (ROOT / "config" / "production.yaml", ROOT / "envoy" / "kubernetes.yaml")]:
        result = _check("--config", str(config), "--envoy", str(envoy))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout
        # The production config's secrets are not on this machine: said, not refused.
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert all("`extproc up` and `serve` need it" in line for line in warnings), warnings
        assert bool(warnings) == (config != QUICKSTART_CONFIG)


def test_check_warns_of_unset_secrets_and_limits_that_match_nobody(tmp_path):
    def edit(config):
        config["providers"]["mock"]["api_key"] = {"env": "LLMGW_TEST_UNSET_SECRET"}
        config["budgets"] += [{"name": "typo", "scope": "team", "match": "reserch", "unit": "tokens",
                               "limit": 10, "window": "hour"},
                              {"name": "fine", "scope": "team", "match": "research", "unit": "tokens",
                               "limit": 10, "window": "hour"}]
        config["runs"]["teams"] = ["research", "suport"]
    path = write(tmp_path, _broken(edit))
    result = _check("--config", path)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr
    assert f"{path}: providers.mock.api_key: warning: environment variable LLMGW_TEST_UNSET_SECRET is not set" \
        in result.stderr
    assert "budgets/rate_limits typo: warning: matches team 'reserch'" in result.stderr
    assert "runs.teams: warning: names team 'suport'" in result.stderr
    assert "'research'" not in result.stderr
    # `up` refuses what `check` warned of, naming it.
    loaded = subprocess.run([sys.executable, "-c", f"from extproc.config.filter_config import load_config; "
                             f"load_config({path!r})"], capture_output=True, text=True, timeout=60)
    assert loaded.returncode != 0 and "LLMGW_TEST_UNSET_SECRET is not set" in loaded.stderr


def test_check_rejects_unknown_cluster(tmp_path):
    config = _broken(lambda c: c["providers"]["mock"].update(cluster="nowhere"))
    path = write(tmp_path, config)
    result = _check("--config", path, "--envoy", str(QUICKSTART_ENVOY))
    assert result.returncode != 0
    assert result.stderr.strip() == (f"{path}: providers.mock.cluster: cluster 'nowhere' is not "
                                     f"defined in {QUICKSTART_ENVOY}")


def test_check_rejects_bad_yaml(tmp_path):
    path = write(tmp_path, "models: [unclosed\n")
    result = _check("--config", path)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"{path}: line ") and "invalid YAML" in line


def test_check_rejects_unknown_model_in_allowlist(tmp_path):
    path = write(tmp_path, _broken(lambda c: c["keys"][1].update(models=["gpt-4o-mini", "gpt-7"])))
    result = _check("--config", path, "--envoy", str(QUICKSTART_ENVOY))
    assert result.returncode != 0
    assert result.stderr.strip() == f"{path}: keys[1].models[1]: unknown model 'gpt-7'"


def test_check_runs_envoy_validate(tmp_path):
    envoy = safe_load(QUICKSTART_ENVOY.read_text())
    envoy["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = "not-a-port"
    envoy_path = write(tmp_path, envoy, "envoy.yaml")
    result = _check("--config", str(QUICKSTART_CONFIG), "--envoy", envoy_path)
    assert result.returncode != 0
    assert "envoy --mode validate" in result.stderr


@pytest.mark.parametrize("duration,expected", [
    (None, "not set; set it to 30s (server.worker_connection_age_s)"),
    ("45s", "45s, but server.worker_connection_age_s is 30: make them equal")])
def test_check_compares_envoy_connection_duration_with_worker_connection_age(tmp_path, duration, expected):
    envoy = safe_load(QUICKSTART_ENVOY.read_text())
    [cluster] = [c for c in envoy["static_resources"]["clusters"] if c["name"] == "extproc"]
    options = next(iter(cluster["typed_extension_protocol_options"].values()))["common_http_protocol_options"]
    if duration is None:
        del options["max_connection_duration"]
    else:
        options["max_connection_duration"] = duration
    envoy_path = write(tmp_path, envoy, "envoy.yaml")
    result = _check("--config", str(QUICKSTART_CONFIG), "--envoy", envoy_path)
    assert result.returncode != 0
    assert result.stderr.strip() == (f"{envoy_path}: clusters.extproc.typed_extension_protocol_options"
                                     f".common_http_protocol_options.max_connection_duration: {expected}"
                                     + (" so that Envoy drains worker connections itself" if duration is None else ""))


def test_shipped_prices_apply_by_exact_name_or_alias_without_config_price(tmp_path):
    config = quickstart_config()
    for name, served in [("dated", "gpt-4o-2024-08-06"), ("pro", "gpt-5-pro"), ("o3pro", "o3-pro"),
                         ("o1mini", "o1-mini"), ("sonnet", "claude-sonnet-4-5-20250929")]:
        config["models"][name] = {"backends": [{"provider": "mock", "model": served}]}
    loaded = load_config(write(tmp_path, config))
    price = {name: loaded.models[name].price for name in ("dated", "pro", "o3pro", "o1mini", "sonnet")}
    assert (price["dated"].input, price["dated"].output) == (2.50, 10.0)
    # A longer name is another model, not its prefix's: -pro costs about ten times more.
    assert (price["pro"].input, price["pro"].output) == (15.0, 120.0)
    assert (price["o3pro"].input, price["o3pro"].output) == (20.0, 80.0)
    assert (price["o1mini"].input, price["o1mini"].output) == (1.10, 4.40)
    # Anthropic's cache: reads at 0.1x the input price, 5-minute writes at 1.25x.
    assert (price["sonnet"].cached_input, price["sonnet"].cache_write) == (0.3, 3.75)
    assert loaded.models["gpt-4o-mini"].price.cost(Usage(1_000_000, 1_000_000)) == pytest.approx(0.75)
    # cached input tokens are billed at the cached price
    assert loaded.models["gpt-4o"].price.cost(Usage(1_000_000, 0, cached_tokens=1_000_000)) == pytest.approx(1.25)
    assert price["sonnet"].cost(Usage(1_000_000, 0, cached_tokens=200_000, cache_write_tokens=100_000)) == \
        pytest.approx((700_000 * 3 + 200_000 * 0.3 + 100_000 * 3.75) / 1e6)


def test_an_unpriced_model_loads_with_a_warning_check_prints(tmp_path):
    config = quickstart_config()
    config["models"]["custom"] = {"backends": [{"provider": "mock", "model": "my-llama"}]}
    config["models"]["prefixed"] = {"backends": [{"provider": "mock", "model": "gpt-4o-mini-custom-ft"}]}
    path = write(tmp_path, config)
    loaded = load_config(path)
    assert loaded.models["custom"].price is None and not loaded.models["custom"].fully_priced
    assert loaded.models["prefixed"].price is None           # no prefix matching
    assert loaded.models["custom"].cost(None, Usage(1000, 1000)) == 0.0
    result = _check("--config", path)
    assert result.returncode == 0, result.stderr
    assert f"{path}: models.custom.backends[0]: warning: no price" in result.stderr
    assert "'gpt-4o-mini-custom-ft'" in result.stderr


@pytest.mark.parametrize("entry, budget, warned", [
    ({"models": "*"}, None, True),                                          # every model, no team budget
    ({"models": ["gpt-4o-mini"]}, None, False),                             # an allowlist
    ({"models": "*"}, {"name": "t", "scope": "team", "unit": "usd", "limit": 5, "window": "day"}, False),
    ({"models": "*"}, {"name": "t", "scope": "team", "match": "research", "unit": "usd", "limit": 5,
                       "window": "day"}, True),                             # one team's budget only
])
def test_check_warns_of_a_catch_all_team_with_every_model_and_no_team_budget(tmp_path, entry, budget, warned):
    config = quickstart_config()
    config["identity"]["teams"]["*"] = entry
    if budget:
        config["budgets"].append(budget)
    result = _check("--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    assert ("identity.teams.*: warning: lets every team without an entry use every model" in result.stderr) == warned


def _name(entry: dict) -> str:
    inner = entry["typed_config"].get("extension_config")            # a match_delegate's filter
    return inner["name"] if inner else entry["name"]


def _without_filter(name: str):
    def edit(filters, ext_proc, manager=None):
        filters[:] = [f for f in filters if _name(f) != name]
    return edit


def _lua_after_the_usage_reader(filters, ext_proc, manager):
    at = next(i for i, f in enumerate(filters) if _name(f) == "envoy.filters.http.ext_proc")
    [lua] = [f for f in filters[at:] if _name(f) == "envoy.filters.http.lua"]
    filters.remove(lua)
    filters.insert(len(filters) - 1, lua)                            # just before the router


def _include_usage_not_read(filters, ext_proc, manager):
    """json_to_metadata's request rules read the fields as well as the Lua reader does."""
    filters.remove(next(f for f in filters if f.get("typed_config") is _request_reader(filters)))
    [reader] = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.json_to_metadata"]
    reader["request_rules"] = {"rules": [{"selectors": [{"key": key}]} for key in ("stream", "model")]}


def _without_forwarded_stream(filters, ext_proc, manager):
    ext_proc["metadata_options"]["forwarding_namespaces"]["untyped"].remove("llm_gateway.stream")


def _without_trailer_mode(filters, ext_proc, manager):
    ext_proc["allowed_override_modes"] = [m for m in ext_proc["allowed_override_modes"]
                                          if m["response_trailer_mode"] != "SEND"]


def _without_status_attribute(filters, ext_proc, manager):
    del ext_proc["response_attributes"]


def _without_one_message_mode(filters, ext_proc, manager):
    ext_proc["allowed_override_modes"] = [m for m in ext_proc["allowed_override_modes"]
                                          if m["response_body_mode"] != "BUFFERED" or m["response_header_mode"] != "SKIP"]


def _without_a_ratelimit_header(filters, ext_proc, manager):
    [host] = manager["route_config"]["virtual_hosts"]
    host["response_headers_to_add"] = [h for h in host["response_headers_to_add"]
                                       if h["header"]["key"] != "x-ratelimit-remaining-tokens"]


def _request_reader(filters):
    """The Lua filter before ext_proc that reads the body's fields (envoy/template.yaml)."""
    at = next(i for i, f in enumerate(filters) if _name(f) == "envoy.filters.http.ext_proc")
    [reader] = [f["typed_config"] for f in filters[:at] if _name(f) == "envoy.filters.http.lua"]
    return reader


def _model_not_read(filters, ext_proc, manager):
    source = _request_reader(filters)["default_source_code"]
    source["inline_string"] = source["inline_string"].replace('"model"', '"name"')


def _without_size_attribute(filters, ext_proc, manager):
    ext_proc["response_attributes"] = ["response.code"]


def _without_cut_stream_log(filters, ext_proc, manager):
    manager["access_log"] = [log for log in manager["access_log"] if log["name"] != "envoy.access_loggers.http_grpc"]


def _json_usage_not_read(filters, ext_proc, manager):
    """No json_to_metadata after ext_proc (the one before it stays)."""
    at = next(i for i, f in enumerate(filters) if _name(f) == "envoy.filters.http.ext_proc")
    filters[at + 1:] = [f for f in filters[at + 1:] if _name(f) != "envoy.filters.http.json_to_metadata"]


def _without_body_unread_mode(filters, ext_proc, manager):
    ext_proc["allowed_override_modes"] = [m for m in ext_proc["allowed_override_modes"]
                                          if m["request_body_mode"] != "NONE"]


def _output_cap_not_read(filters, ext_proc, manager):
    """A reader that misses one field bounding the output (a Gemini call's answers)."""
    reader = _request_reader(filters)
    source = reader["default_source_code"]["inline_string"]
    reader["default_source_code"]["inline_string"] = source.replace('["generationConfig.candidateCount"] = true,', "")


def _output_caps_read_alone(filters, ext_proc, manager):
    [announced] = ext_proc["grpc_service"]["initial_metadata"]
    announced["value"] = "headers-from-metadata streams-passed-through output-caps-read"


def _cut_streams_logged_alone(filters, ext_proc, manager):
    [announced] = ext_proc["grpc_service"]["initial_metadata"]
    announced["value"] = "headers-from-metadata cut-streams-logged"


@pytest.mark.parametrize("edit,expected", [
    (_without_size_attribute, ("http_filters: envoy.filters.http.ext_proc: response_attributes does not "
                               "send response.size (ext_proc announces cut-streams-logged)")),
    (_without_cut_stream_log, ("access_log: no envoy.access_loggers.http_grpc to the extproc cluster "
                               "whose filter keeps the streams with a llm_gateway.cut_id")),
    (_cut_streams_logged_alone, ("http_filters: envoy.filters.http.ext_proc: announces cut-streams-logged "
                                 "without streams-passed-through")),
    (_without_status_attribute, ("http_filters: envoy.filters.http.ext_proc: response_attributes does not "
                                 "send response.code (ext_proc announces headers-from-metadata)")),
    (_without_one_message_mode, ("http_filters: envoy.filters.http.ext_proc: allowed_override_modes has no "
                                 "mode with response_header_mode SKIP and response_body_mode BUFFERED")),
    (_without_a_ratelimit_header, ("route_config.virtual_hosts.openai_api.response_headers_to_add: no "
                                   "x-ratelimit-remaining-tokens from %DYNAMIC_METADATA(llm_gateway:headers:...)%")),
    (_model_not_read, ("http_filters: nothing before envoy.filters.http.ext_proc reads model into "
                       "llm_gateway.request (ext_proc announces headers-from-metadata)")),
    (_without_filter("envoy.filters.http.sse_to_metadata"),
     "http_filters: no envoy.filters.http.sse_to_metadata after envoy.filters.http.ext_proc"),
    (_without_filter("envoy.filters.http.bandwidth_limit"),
     "http_filters: no envoy.filters.http.bandwidth_limit after envoy.filters.http.ext_proc"),
    (_without_forwarded_stream, ("http_filters: envoy.filters.http.ext_proc: metadata_options"
                                 ".forwarding_namespaces does not forward llm_gateway.stream")),
    (_without_trailer_mode, "http_filters: envoy.filters.http.ext_proc: allowed_override_modes has no mode"),
    (_include_usage_not_read, ("http_filters: nothing before envoy.filters.http.ext_proc reads "
                               "stream_options.include_usage into llm_gateway.request")),
    (_without_filter("envoy.filters.http.lua"), ("http_filters: no envoy.filters.http.lua between "
                                                 "envoy.filters.http.ext_proc and envoy.filters.http.sse_to_metadata")),
    (_lua_after_the_usage_reader, "http_filters: no envoy.filters.http.lua between"),
    (_json_usage_not_read, ("http_filters: no envoy.filters.http.json_to_metadata after envoy.filters.http.ext_proc "
                             "whose response rules read a JSON answer's usage into llm_gateway.stream")),
    (_without_body_unread_mode, ("http_filters: envoy.filters.http.ext_proc: allowed_override_modes has no mode "
                                 "with request_body_mode NONE")),
    (_output_cap_not_read, ("http_filters: nothing before envoy.filters.http.ext_proc reads "
                            "generationConfig.candidateCount into llm_gateway.request (ext_proc announces "
                            "output-caps-read)")),
    (_output_caps_read_alone, ("http_filters: envoy.filters.http.ext_proc: announces output-caps-read without "
                               "bodies-unread")),
], ids=["no size attribute", "cut streams not logged", "cut streams without pass-through",
        "no status attribute", "one-message mode not allowed", "a header not added from metadata",
        "model not read", "no sse_to_metadata", "no trailers filter", "stream usage not forwarded",
        "mode not allowed", "include_usage not read", "no usage-chunk filter",
        "usage chunk taken out before it is read", "JSON usage not read", "body-unread mode not allowed",
        "an output cap not read", "output caps read without bodies unread"])
def test_check_finds_what_the_announced_features_need(tmp_path, edit, expected):
    """The ext_proc filter announces that Envoy adds the gateway's headers, that streams
    pass through and lose an unasked usage chunk, and that cut ones are logged, so the
    service relies on it: without these pieces answers would lose their headers or their
    status, a stream's usage would never reach the service, or would reach a client that
    did not ask for it, and a cut stream's call would wait for an entry that never comes."""
    envoy = safe_load(QUICKSTART_ENVOY.read_text())
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = manager["http_filters"]
    [ext_proc] = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.ext_proc"]
    edit(filters, ext_proc, manager)
    envoy_path = write(tmp_path, envoy, "envoy.yaml")
    result = _check("--config", str(QUICKSTART_CONFIG), "--envoy", envoy_path)
    assert result.returncode != 0
    assert any(line.startswith(f"{envoy_path}: {expected}") for line in result.stderr.splitlines()), result.stderr


def test_check_accepts_a_config_that_announces_nothing(tmp_path):
    """Without the features in its gRPC metadata, an Envoy config without these filters
    is valid: the service keeps JSON answers in two messages and streams chunk by chunk."""
    envoy = safe_load(QUICKSTART_ENVOY.read_text())
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = manager["http_filters"]
    [ext_proc] = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.ext_proc"]
    del ext_proc["grpc_service"]["initial_metadata"]
    for name in ("envoy.filters.http.lua", "envoy.filters.http.bandwidth_limit", "envoy.filters.http.sse_to_metadata"):
        _without_filter(name)(filters, ext_proc)
    _without_status_attribute(filters, ext_proc, manager)
    _without_one_message_mode(filters, ext_proc, manager)
    del manager["route_config"]["virtual_hosts"][0]["response_headers_to_add"]
    result = _check("--config", str(QUICKSTART_CONFIG), "--envoy", write(tmp_path, envoy, "envoy.yaml"))
    assert result.returncode == 0, result.stderr
