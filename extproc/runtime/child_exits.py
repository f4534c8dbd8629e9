"""Waiting for a child process to exit, a signal, or a time, without polling.

The supervisor's loop watches its children (Envoy, the workers, the MCP aggregator, the
mock). Woken every 50 ms to look, an idle gateway's supervisor took ~20 wake-ups and
~0.5% of a core a second; waiting on each child's pidfd (Linux 5.3+), it wakes when one
exits, at once, and otherwise only when its next periodic check is due. A signal (SIGTERM
to stop) wakes it through the wakeup fd Python's signal handling writes to. Where pidfds
are not to be had, it sleeps the tick it was given, as before.

Imports nothing of the gateway.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time


class ChildExits:
    """Waits for one of the given children to exit, a signal to arrive, or a timeout.
    Made and used on the main thread (signal.set_wakeup_fd's)."""

    def __init__(self) -> None:
        self._pidfds: dict[int, int] = {}           # pid -> its pidfd
        self._wake_read, self._wake_write = socket.socketpair()
        for end in (self._wake_read, self._wake_write):
            end.setblocking(False)
        try:
            self._previous_wakeup = signal.set_wakeup_fd(self._wake_write.fileno(), warn_on_full_buffer=False)
            self._wakes = True
        except ValueError:                          # not the main thread: no wakeup, the tick instead
            self._previous_wakeup, self._wakes = -1, False

    def wait(self, children: list[subprocess.Popen], timeout: float, tick: float) -> None:
        """Returns once a child of `children` exits, a signal arrives or `timeout` seconds
        pass; sleeps `tick` instead where it cannot wait on the children."""
        fds = self._watched(children) if self._wakes else None
        if fds is None:
            time.sleep(min(tick, timeout))
            return
        try:
            select.select([*fds, self._wake_read], [], [], max(0.0, timeout))
        except OSError:                             # a pidfd closed under it: look again now
            return
        try:
            while self._wake_read.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _watched(self, children: list[subprocess.Popen]) -> list[int] | None:
        """The pidfds of the children (those of children gone closed), or None when one
        cannot be had (no pidfd_open, or a process already reaped)."""
        pids = {child.pid for child in children}
        for pid in [pid for pid in self._pidfds if pid not in pids]:
            os.close(self._pidfds.pop(pid))
        if not hasattr(os, "pidfd_open"):
            return None
        for pid in pids:
            if pid not in self._pidfds:
                try:
                    self._pidfds[pid] = os.pidfd_open(pid)
                except OSError:
                    return None
        return list(self._pidfds.values())

    def close(self) -> None:
        if self._wakes:
            signal.set_wakeup_fd(self._previous_wakeup)
        for fd in self._pidfds.values():
            os.close(fd)
        self._pidfds.clear()
        self._wake_read.close()
        self._wake_write.close()
