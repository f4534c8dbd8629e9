"""Small helpers the supervisor uses on the processes it starts (their descriptors,
their memory, their sockets, stopping them) and on its HTTP servers. Imports nothing of
the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path


def raise_descriptor_limit() -> int:
    """Raise this process's open-file limit to its hard limit (Envoy, started next,
    inherits it) and return it: the soft limit (often 1,024 or 20,000) would else cap
    client connections far below what the machine allows."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def terminate(processes: Sequence[subprocess.Popen], grace: float,
              others: Sequence[subprocess.Popen] = (), others_grace: float = 0.0) -> None:
    """SIGTERM to each, then SIGKILL to those still running after `grace` seconds (for
    `others`, after `others_grace`): all are told at once, so they stop together."""
    for process in (*processes, *others):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    now = time.monotonic()
    for group, deadline in ((others, now + others_grace), (processes, now + grace)):
        for process in group:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def rss_mb(pid: int) -> float:
    """A process's resident memory, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


PF_EXITING = 0x4          # the kernel's flag of a task in do_exit (/proc/<pid>/stat, field 9)


def serving(process: subprocess.Popen) -> bool:
    """Whether the process lives and is not on its way out. A killed process tears down its
    memory before its descriptors: for a few milliseconds (more on a busy host) its
    listening socket still accepts connections that will never be served."""
    return process.poll() is None and not exiting(process.pid)


def exiting(pid: int) -> bool:
    """Whether the kernel has the task in its exit (a zombie too); False without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        fields = stat[stat.rindex(b")") + 2:].split()     # after "pid (comm) "
        return bool(int(fields[6]) & PF_EXITING)          # field 9 (the state is field 3)
    except (OSError, IndexError, ValueError):
        return False


def connectable(path: str) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


# How often a server's loop looks whether it was told to stop: what a stop waits at most.
SHUTDOWN_POLL_S = 0.1


def serve(server: ThreadingHTTPServer) -> None:
    server.serve_forever(poll_interval=SHUTDOWN_POLL_S)


def stop_servers(servers: list[ThreadingHTTPServer]) -> None:
    """Stops them together: each stop waits for its loop's next look."""
    stopping = [threading.Thread(target=server.shutdown) for server in servers]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()
