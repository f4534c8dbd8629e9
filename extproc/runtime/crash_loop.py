"""Crash-loop back-off for one supervised process, as kubelet does for pods.

A process that dies within STABLE_AFTER_S of its start waits 0.5 s, 1 s, 2 s ... up to
MAX_RESTART_DELAY_S before its next start; the first crash after a stable run restarts it
at once. A process that cannot start (its config file gone or broken, a bad environment)
would else be restarted every tick, each start a core busy importing Python beside Envoy.
The supervisor keeps one per worker index and one for the MCP aggregator.
"""

from __future__ import annotations

import time

STABLE_AFTER_S = 60.0
MAX_RESTART_DELAY_S = 30.0


def restart_delay(quick_crashes: int) -> float:
    """Seconds to wait before a restart after the n-th crash in a row soon after start."""
    return 0.0 if quick_crashes <= 1 else min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (quick_crashes - 2))


class CrashLoop:
    """When one process started, how many quick crashes it has had in a row, and when its
    next start is due once it has crashed."""

    __slots__ = ("started_at", "quick_crashes", "restart_at")

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.quick_crashes = 0
        self.restart_at: float | None = None     # set while a crashed process waits

    def started(self) -> None:
        self.started_at = time.monotonic()

    def crashed(self) -> tuple[float, float] | None:
        """Called each tick while the process is down: on the first call after a crash,
        (how long it lived, the delay before its restart); None on later calls."""
        if self.restart_at is not None:
            return None
        now = time.monotonic()
        lived = now - self.started_at
        self.quick_crashes = self.quick_crashes + 1 if lived < STABLE_AFTER_S else 1
        delay = restart_delay(self.quick_crashes)
        self.restart_at = now + delay
        return lived, delay

    def restart_due(self) -> bool:
        """True once the back-off is over (and the restart is taken: the wait is cleared)."""
        if self.restart_at is None or time.monotonic() < self.restart_at:
            return False
        self.restart_at = None
        return True
