"""Gateways and `extproc` commands forked from one warm template per test process
(extproc/runtime/fork_template.py) instead of started as fresh interpreters.

A stack's supervisor, its fork server and a command each skip the imports and tables a
fresh interpreter spends ~1-3 s of CPU on; the suite starts ~100 stacks and ~170
commands on two cores (docs/decisions/fork-template.md). What differs from a fresh
start is only what a process reads when it starts (glibc's malloc settings, gRPC's
experiments, Python's own variables, /proc/<pid>/environ): a stack or command whose
environment differs from the template's there starts fresh, as does one started off
the main thread (the template goes with the thread that started it).

Only the suite forks from it (conftest.py calls `use_template`): the benches, which import
the same stacks, measure production's own start and process tree."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from extproc.runtime.fork_template import TemplateChild
from extproc.runtime.forked import ENCODINGS_ENV, TEMPLATE_ENV
from extproc.runtime.worker_env import worker_env

# Read by a process when it starts: a template started with other values cannot stand in.
_AT_START = re.compile(r"MALLOC_.*|GRPC_.*|LD_.*|PYTHON(?!UNBUFFERED$|PATH$).*|EXTPROC_KNOWN_FINDINGS|EXTPROC_CHILDREN")
COLD_ENV = "EXTPROC_TESTS_COLD"      # "1" (for the suite, or a stack's env): fresh interpreters

_template: tuple[subprocess.Popen, str, dict[str, str]] | None = None
_in_use = False


def use_template() -> None:
    """Fork this process's gateways and commands from a warm template from now on."""
    global _in_use
    _in_use = True


def _start_template() -> tuple[subprocess.Popen, str, dict[str, str]] | None:
    global _template
    if _template is not None and _template[0].poll() is None:
        return _template
    if threading.current_thread() is not threading.main_thread():
        return None
    folder = tempfile.mkdtemp(prefix="extproc-template-")
    path = os.path.join(folder, "template.sock")
    env = {**os.environ, **worker_env(), "PYTHONUNBUFFERED": "1",
           ENCODINGS_ENV: "o200k_base,cl100k_base"}
    with open(os.path.join(folder, "template.stderr"), "wb") as stderr:
        # The room: a child's title (cmdline, which tests read) is as long as this at most.
        process = subprocess.Popen([sys.executable, "-m", "extproc.runtime.fork_template_server", path, "-" * 2048],
                                   env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the fork template did not start:\n"
                               + Path(folder, "template.stderr").read_text()[-3000:])
        time.sleep(0.02)
    _template = (process, path, env)
    atexit.register(_stop_template, process, folder)
    return _template


def _at_start(env: Mapping[str, str]) -> dict[str, str]:
    """What a process started with `env` reads when it starts (a supervisor gives its
    children worker_env()'s defaults where the operator set none)."""
    defaults = {name: env.get(name, value) for name, value in worker_env().items()}
    return {name: value for name, value in {**env, **defaults}.items() if _AT_START.fullmatch(name)}


def template_for(env: Mapping[str, str]) -> str | None:
    """The template's socket when a process with `env` may be forked from it."""
    if not _in_use or env.get(COLD_ENV) == "1" or env.get("EXTPROC_CHILDREN") == "exec":
        return None
    template = _start_template()
    if template is None:
        return None
    return template[1] if _at_start(env) == _at_start(template[2]) else None


def launch_extproc(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                   cwd: str | os.PathLike | None = None, stdin=None, stdout=None, stderr=None):
    """`python -m extproc <argv>`: forked from the template when it can stand in (a
    TemplateChild, handled as a Popen), else a fresh interpreter (a Popen). The streams
    are files (or None: this process's)."""
    env = dict(os.environ if env is None else env)
    cwd = cwd or os.getcwd()
    template = template_for(env)
    if template is None:
        return subprocess.Popen([sys.executable, "-m", "extproc", *argv], env=dict(env), cwd=str(cwd),
                                stdin=stdin, stdout=stdout, stderr=stderr)
    opened: list[int] = []

    def descriptor(stream, index: int) -> int:
        if stream is None:
            return index
        if stream == subprocess.DEVNULL:
            opened.append(os.open(os.devnull, os.O_RDWR))
            return opened[-1]
        return stream.fileno() if hasattr(stream, "fileno") else stream
    try:
        streams = [descriptor(stream, index) for index, stream in enumerate((stdin, stdout, stderr))]
        return TemplateChild(template, list(argv), {**env, TEMPLATE_ENV: template}, str(cwd), streams)
    finally:
        for fd in opened:
            os.close(fd)


def run_extproc(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                timeout: float | None = None, text: bool = False,
                check: bool = False, capture_output: bool = True) -> subprocess.CompletedProcess:
    """As subprocess.run([python, -m, extproc, *argv], capture_output=True, ...): the
    output is always captured."""
    assert capture_output, "run_extproc captures the command's output"
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = launch_extproc(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        if getattr(child, "waiter_lost", None):      # not the command's status: say so
            raise RuntimeError(f"`extproc {' '.join(argv)}`: {child.waiter_lost}")
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if text:
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
    result = subprocess.CompletedProcess([sys.executable, "-m", "extproc", *argv], code, out, err)
    if check:
        result.check_returncode()
    return result


def fork_server_pids(supervisor: int) -> list[int]:
    """The fork servers a template forked for `supervisor` (not its children: the
    template's)."""
    title = f"extproc fork-server (for {supervisor})".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().rstrip(b"\0").startswith(title):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _stop_template(process: subprocess.Popen, folder: str) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    shutil.rmtree(folder, ignore_errors=True)
