"""Replacing a worker that outgrew `worker_max_rss_mb`, without failing a request: a step
of the supervisor's loop (supervisor.py), never a wait inside it.

Imports nothing of the supervisor: `RecyclesWorkers` is a part of the Supervisor class,
using its state (workers, generations, replacements, the retiring workers) and its
worker start and socket switching.
"""

from __future__ import annotations

import math
import signal
import sys
import time

from .crash_loop import CrashLoop
from .processes import connectable, rss_mb, terminate


class RecyclesWorkers:
    """The supervisor's worker replacement (its state is the Supervisor's)."""

    def _recycle_bloated_workers(self) -> None:
        now = time.monotonic()
        for process, stop_at in self.retiring:
            if now >= stop_at and process.poll() is None:
                process.send_signal(signal.SIGUSR2)      # stop; streams in flight finish
        # Told ones stay listed (stop() still waits for them) with a time that never comes again.
        self.retiring = [(p, t if now < t else math.inf) for p, t in self.retiring if p.poll() is None]
        limit = self.config.server.worker_max_rss_mb
        if not limit or self._stopping:
            return
        for index, process in list(self.workers.items()):
            if index not in self.replacing and process.poll() is None and rss_mb(process.pid) > limit:
                self.recycle(index)

    def recycle(self, index: int, timeout: float = 30.0) -> None:
        """Start replacing worker `index` without failing a request: the new worker listens
        on its own socket and, once it does (`_advance_replacements`), Envoy's path is
        switched to it. The old one goes on serving until each of its connections reaches
        its age (worker_connection_age_s: Envoy drains it, and its next connection goes
        to the new worker); only then is it told to stop, and its streams in flight
        finish. (Stopping it at once would race: streams Envoy opened just before seeing
        the GOAWAY of a shutdown are cancelled.)"""
        print(f"extproc: worker {index} over {self.config.server.worker_max_rss_mb} MB; replacing it",
              file=sys.stderr)
        self.replacing[index] = (self.workers[index], self.generation[index], time.monotonic() + timeout)
        self._start_worker(index, switch=False)

    def _advance_replacements(self) -> None:
        for index, (old, old_generation, deadline) in list(self.replacing.items()):
            if connectable(str(self._process_socket(index))):
                self._point_at(index)
                self.crash_loops.setdefault(index, CrashLoop()).started()
                self.retiring.append((old, time.monotonic() + self.config.server.worker_connection_age_s + 5))
            elif self.workers[index].poll() is not None or time.monotonic() > deadline:
                print(f"extproc: the replacement of worker {index} did not start; keeping the old one",
                      file=sys.stderr)
                terminate([self.workers[index]], 1)
                self._process_socket(index).unlink(missing_ok=True)
                self.workers[index], self.generation[index] = old, old_generation
            else:
                continue
            del self.replacing[index]
