"""Running a coroutine at once, in the caller's stack, rather than in a new task.

The workers answer each ext_proc message in the read that brought it (grpc_h2.py,
MESSAGES): the pipeline's coroutine is stepped here, outside any task, and nearly
always ends without waiting (allotments, SQLite, regexes). A task per message would
cost a turn of the loop and its bookkeeping for nothing. Only a coroutine that does
wait (a Redis round trip, a guardrail plugin's call) goes on in a task, as a `Rest`.

Rule for code the pipeline awaits: before awaiting I/O, `await task_needed()`.
asyncio.timeout, redis-py and grpc.aio expect a current task; outside one, this hands
the rest of the coroutine to a task first (one loop turn). Code that forgets it fails
loudly ("Timeout should be used inside a task"), never silently.
(Python 3.12's eager task factory does the same with a task set up front; the workers
run on 3.11 too.)
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def _to_a_task() -> Generator[None, None, None]:
    yield                                    # a bare yield: the caller of start() sees None


async def task_needed() -> None:
    """Outside a task (a coroutine run by `start()`), moves the rest of the coroutine
    into one; inside a task, does nothing."""
    if asyncio.current_task() is None:
        await _to_a_task()


class Rest:
    """The rest of a coroutine `start()` ran up to a wait, for a task to await: the
    future it waits on goes to the task; the task's wake-ups (and its cancellation)
    go back to the coroutine."""

    __slots__ = ("coroutine", "waiting")

    def __init__(self, coroutine: Coroutine, waiting: Any) -> None:
        self.coroutine = coroutine
        self.waiting = waiting               # what the coroutine yielded: a future, or None

    def __await__(self) -> Generator[Any, None, Any]:
        coroutine, waiting = self.coroutine, self.waiting
        if waiting is None:                  # it asked for a task (a bare yield) and is in one now
            try:
                waiting = coroutine.send(None)
            except StopIteration as end:
                return end.value
        while True:
            try:
                yield waiting
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:   # thrown into the task: its cancellation
                try:
                    waiting = coroutine.throw(error)
                except StopIteration as end:
                    return end.value
            else:
                try:
                    waiting = coroutine.send(None)
                except StopIteration as end:
                    return end.value


def start(coroutine: Coroutine) -> tuple[bool, Any]:
    """Runs `coroutine` up to its first wait: (True, its result) when it ended there,
    else (False, a `Rest` to await in a task). Its exceptions propagate from here."""
    try:
        waiting = coroutine.send(None)
    except StopIteration as end:
        return True, end.value
    return False, Rest(coroutine, waiting)
