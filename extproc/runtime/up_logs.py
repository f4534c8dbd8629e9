"""Where `extproc up` sends its processes' logs: files in the state dir by default, so the
terminal that shows the URLs and keys is not buried under a JSON line per call (and
Envoy's access line beside it); `up --log` keeps them on the terminal.

Every child (Envoy, the workers, the mock, the MCP servers) inherits this process's file
descriptors 1 and 2: they are pointed at the files, while `sys.stdout` and `sys.stderr`
keep the terminal for the banner and the supervisor's own messages (a crash, a restart).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOG_DIR = "logs"
SERVICE_LOG = "gateway.jsonl"     # stdout: the service's JSON line per call and per MCP call
ENVOY_LOG = "envoy.log"           # stderr: Envoy's log and access log, every process's warnings


def log_paths(state_dir: str | Path) -> tuple[Path, Path]:
    folder = Path(state_dir) / LOG_DIR
    return folder / SERVICE_LOG, folder / ENVOY_LOG


def send_logs_to_files(state_dir: str | Path) -> tuple[Path, Path]:
    """Points descriptors 1 and 2 at the log files (appended to, owner only); this
    process's own prints still reach the terminal. Returns the two files."""
    service, envoy = log_paths(state_dir)
    service.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_out = os.fdopen(os.dup(1), "w", buffering=1, encoding=sys.stdout.encoding, errors="replace")
    terminal_err = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")
    for path, descriptor in ((service, 1), (envoy, 2)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(opened, descriptor)
        os.close(opened)
    sys.stdout, sys.stderr = terminal_out, terminal_err
    return service, envoy
