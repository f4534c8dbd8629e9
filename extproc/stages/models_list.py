"""`GET /v1/models` and `/v1/models/{id}`, answered by the gateway: the models a key may
call, in OpenAI's shape, or in Anthropic's when the caller sends `anthropic-version`.

Besides the config's models, a provider that lets callers name its models (`models: "*"`
or patterns) contributes "<provider>/<model>" for each model of the shipped price table
its patterns allow and its API serves (Claude models for an Anthropic provider, the
others for an OpenAI one).
"""

from __future__ import annotations

import datetime as dt
import time

import orjson

from ..api.openai import Endpoint
from ..api.prices import PRICES
from ..config.filter_config import GatewayConfig, VirtualKey
from ..pipeline.errors import GatewayError

ANTHROPIC_MODEL = Endpoint("model", ("GET",), "anthropic")


def _names(config: GatewayConfig, key: VirtualKey) -> list[str]:
    names = [name for name in config.models if key.may_use(name)]
    for provider in config.providers.values():
        if not provider.model_patterns:
            continue
        claude = provider.dialect == "anthropic"
        names.extend(f"{provider.name}/{model}" for model in PRICES
                     if model.startswith("claude-") == claude and provider.serves(model)
                     and key.may_use(f"{provider.name}/{model}"))
    return names


def models_list(config: GatewayConfig, key: VirtualKey, dialect: str) -> bytes:
    created = int(time.time())
    data = [_model(name, created, dialect) for name in _names(config, key)]
    if dialect == "anthropic":
        return orjson.dumps({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
    return orjson.dumps({"object": "list", "data": data})


def one_model(config: GatewayConfig, key: VirtualKey, name: str, dialect: str) -> bytes:
    """One model; one this key may not use is as unknown to it as one that does not exist."""
    if config.model(name) is None or not key.may_use(name):
        raise GatewayError(404, "model_not_found",
                           f"The model '{name[:100]}' does not exist or you do not have access to it.")
    return orjson.dumps(_model(name, int(time.time()), dialect))


def _model(name: str, created: int, dialect: str) -> dict:
    if dialect == "anthropic":
        return {"type": "model", "id": name, "display_name": name,
                "created_at": dt.datetime.fromtimestamp(created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}
