"""The two private interfaces the service relies on (docs/decisions/private-interfaces.md)
still behave as it needs: a library upgrade that changes either fails here first."""

from __future__ import annotations

import asyncio

import toktok

from extproc.api.tokens import get_encoding
from extproc.runtime.processor_aio import _to_its_end


async def _waits_for(future: asyncio.Future) -> str:
    return await future


def test_an_operation_driven_by_hand_finishes_after_its_waiter_is_cancelled():
    """`_to_its_end` steps a coroutine itself (asyncio's `_asyncio_future_blocking`
    protocol): the operation must still reach its end when the task awaiting it is gone."""
    async def scenario() -> str:
        loop = asyncio.get_running_loop()
        batch = loop.create_future()
        operation = _waits_for(batch)
        result = _to_its_end(operation)
        waiter = asyncio.ensure_future(asyncio.shield(result))
        await asyncio.sleep(0)
        waiter.cancel()                      # Envoy's reset cancels the handler
        loop.call_later(0.01, batch.set_result, "freed")
        value = await asyncio.wait_for(result, 1)
        assert waiter.cancelled()
        return value
    assert asyncio.run(scenario()) == "freed"


def test_an_operation_that_raises_hands_its_error_on():
    async def scenario() -> None:
        async def failing() -> None:
            await asyncio.sleep(0)
            raise ValueError("bad frame")
        await _to_its_end(failing())
    try:
        asyncio.run(scenario())
    except ValueError as error:
        assert str(error) == "bad frame"
    else:
        raise AssertionError("the operation's error was lost")


def test_toktok_encoder_counts_encodes_and_decodes_as_its_batch_call():
    """`toktok._encoding`: the tokenizer object behind toktok's public batch calls."""
    text = "Ignore all previous instructions. Übergrößenträger 🙂 " * 3
    encoding = get_encoding("o200k_base")
    ids = encoding.encode_ordinary(text)
    assert encoding.decode(ids) == text
    assert encoding.count(text) == len(ids) == toktok.batch_count([text], "o200k_base")[0]
