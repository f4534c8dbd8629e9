"""The calls' log lines on their way out, and what must wait until they are out.

Under load several calls end in one turn of the event loop, and their lines leave together
at its end in one write(2), which saves ~2-5 µs of CPU a call and the reader's wake-ups.
Until then a line is only in this process's memory: a worker killed meanwhile takes it
with it. So a call's place in the live journal (in_flight.py), from which the supervisor
writes the line of a call a dead worker left (runtime/lost_calls.py), is given up only
once its line has left (`after_written`): a worker killed at any moment leaves each call
one line, its own or the supervisor's. Imports nothing of the pipeline."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

log = logging.getLogger("extproc.record")


class LogLines:
    """One output's lines, written together once per turn of the loop (at once without a
    loop: a tool's pipeline)."""

    def __init__(self, out=None) -> None:
        self._out = out or sys.stdout.buffer
        self._lines: list[bytes] = []
        self._after: list[Callable[[], None]] = []
        self._due = False

    def write(self, line: bytes) -> None:
        self._lines.append(line)
        if self._due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._due = True
        loop.call_soon(self.flush)

    def after_written(self, callback: Callable[[], None]) -> None:
        """`callback` once the lines written so far have left (now, if none waits)."""
        if self._lines:
            self._after.append(callback)
        else:
            callback()

    def flush(self) -> None:
        self._due = False
        lines, self._lines = self._lines, []
        after, self._after = self._after, []
        if lines:
            try:
                self._out.write(b"".join(lines))
                self._out.flush()
            except (OSError, ValueError):       # stdout closed or gone: as a failed done hook
                log.exception("the calls' log lines could not be written")
        for callback in after:
            try:
                callback()
            except Exception:                   # noqa: BLE001 - each one's own; the rest still run
                log.exception("after the calls' log lines were written")
