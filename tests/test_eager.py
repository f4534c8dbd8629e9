"""extproc/transport/eager.py: coroutines run at once outside a task, and handed to one to wait."""

from __future__ import annotations

import asyncio

import pytest

from extproc.transport import eager


async def answer(events: list, value):
    events.append(("ran", asyncio.current_task() is not None))
    return value


async def with_a_deadline(events: list, seconds: float):
    events.append("before")
    await eager.task_needed()
    events.append(("in a task", asyncio.current_task() is not None))
    async with asyncio.timeout(seconds):            # needs a current task
        await asyncio.sleep(0.01)
    return "done"


async def waiting_on_a_future(events: list, future: asyncio.Future):
    try:
        return await future
    except asyncio.CancelledError:
        events.append("cancelled")
        raise


def test_a_coroutine_that_never_waits_ends_in_the_callers_stack():
    async def scenario():
        events: list = []
        loop = asyncio.get_running_loop()
        results = []
        loop.call_soon(lambda: results.append(eager.start(answer(events, 42))))   # a callback: no task
        await asyncio.sleep(0)
        assert results == [(True, 42)] and events == [("ran", False)]
    asyncio.run(scenario())


def test_one_that_needs_a_task_goes_on_in_one():
    async def scenario():
        events: list = []
        started = []
        asyncio.get_running_loop().call_soon(lambda: started.append(eager.start(with_a_deadline(events, 5))))
        await asyncio.sleep(0)
        (ended, rest), = started
        assert not ended and events == ["before"]
        assert await asyncio.ensure_future(rest) == "done"
        assert events == ["before", ("in a task", True)]

        # Within a task already, task_needed() yields nothing: it ends in the first step.
        assert eager.start(answer(events, 7)) == (True, 7)
    asyncio.run(scenario())


def test_a_waiting_rest_gets_its_future_and_its_cancellation():
    async def scenario():
        events: list = []
        loop = asyncio.get_running_loop()
        for outcome in ("result", "cancel"):
            future = loop.create_future()
            started = []
            loop.call_soon(lambda: started.append(eager.start(waiting_on_a_future(events, future))))
            await asyncio.sleep(0)
            (ended, rest), = started
            assert not ended
            task = asyncio.ensure_future(rest)
            await asyncio.sleep(0)
            if outcome == "result":
                future.set_result("answer")
                assert await task == "answer"
            else:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert events == ["cancelled"] and future.cancelled()
    asyncio.run(scenario())


def test_a_rest_cancelled_between_its_steps_hears_it():
    """Cancelled while it is not waiting on a future (a bare yield), the coroutine gets
    the CancelledError thrown in, as a task's own coroutine would."""
    async def spinning(events: list):
        try:
            while True:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def scenario():
        events: list = []
        started = []
        asyncio.get_running_loop().call_soon(lambda: started.append(eager.start(spinning(events))))
        await asyncio.sleep(0)
        (ended, rest), = started
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task], timeout=1)
        if not task.done():                      # the cancellation was lost: stop it spinning
            rest.coroutine.close()
            await asyncio.wait([task], timeout=1)
        assert task.cancelled() and events == ["cancelled"]
    asyncio.run(scenario())


def test_forgetting_task_needed_fails_loudly():
    async def no_hand_off():
        async with asyncio.timeout(1):
            return "never"

    async def scenario():
        errors = []

        def run() -> None:
            try:
                eager.start(no_hand_off())
            except RuntimeError as error:
                errors.append(str(error))
        asyncio.get_running_loop().call_soon(run)
        await asyncio.sleep(0)
        assert errors == ["Timeout should be used inside a task"]
    asyncio.run(scenario())
