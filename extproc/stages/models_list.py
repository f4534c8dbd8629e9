"""`GET /v1/models` and `/v1/models/{id}`, answered by the gateway: the models a key may
call, in OpenAI's shape, or in Anthropic's when the caller sends `anthropic-version`.

Besides the config's models, a provider that lets callers name its models (`models: "*"`
or patterns) contributes "<provider>/<model>" for each model of the shipped price table
its patterns allow and its API serves (Claude models for an Anthropic provider, the
others for an OpenAI one).
"""

from __future__ import annotations

import time

import orjson

from ..api.openai import Endpoint
from ..api.prices import PRICES
from ..config.filter_config import GatewayConfig, VirtualKey
from ..dialects import dialect_named
from ..pipeline.errors import GatewayError

def _names(config: GatewayConfig, key: VirtualKey) -> list[str]:
    names = [name for name in config.models if key.may_use(name)]
    for provider in config.providers.values():
        if not provider.model_patterns:
            continue
        names.extend(f"{provider.name}/{model}" for model in PRICES
                     if provider.serves(model) and dialect_named(provider.dialect_for(model)).serves(model)
                     and key.may_use(f"{provider.name}/{model}"))
    return names


def listing(config: GatewayConfig, key: VirtualKey, endpoint: Endpoint, resource_id: str) -> bytes:
    """The answer to a model list's endpoint: every model, or the one its path names."""
    if resource_id:
        return one_model(config, key, resource_id, endpoint.dialect)
    return models_list(config, key, endpoint.dialect)


def models_list(config: GatewayConfig, key: VirtualKey, dialect: str) -> bytes:
    created = int(time.time())
    speaks = dialect_named(dialect)
    return speaks.model_list([speaks.model_entry(name, created) for name in _names(config, key)])


def one_model(config: GatewayConfig, key: VirtualKey, name: str, dialect: str) -> bytes:
    """One model; one this key may not use is as unknown to it as one that does not exist."""
    if config.model(name) is None or not key.may_use(name):
        raise GatewayError(404, "model_not_found",
                           f"The model '{name[:100]}' does not exist or you do not have access to it.")
    return orjson.dumps(dialect_named(dialect).model_entry(name, int(time.time())))
