"""Small helpers the supervisor uses on the processes it starts: their descriptors,
their memory, their sockets, stopping them. Imports nothing of the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
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


def terminate(processes: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to each, then SIGKILL to those still running after `grace` seconds."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
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
