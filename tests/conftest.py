from __future__ import annotations

import pytest
from openai import OpenAI

from gateway_stack import GatewayStack


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """The quickstart gateway, shared by the tests that do not change its config."""
    stack = GatewayStack(tmp_path_factory.mktemp("gateway"), workers=2).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def alice(gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)


@pytest.fixture(scope="session")
def bob(gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key="sk-demo-bob", max_retries=0)
