"""The supervisor's Python children (workers, the mock provider, the MCP aggregator)
forked from one process that has already imported the gateway and loaded the
tokenizers (the standard library's `multiprocessing` fork server), instead of each
starting a fresh interpreter.

Why: a fresh `python -m extproc worker` spends ~2.3 s of CPU before it serves (imports
~0.8 s, the two BPE tokenizers ~0.9 s, the guardrails' tables ~0.3 s), every worker at
every start and every replacement. Forked from the preloaded server, a worker starts
in a fraction of that, and the tokenizers' tables (~100 MB) are pages the workers
share, not a copy each. Figures: docs/decisions/forked-children.md.

The fork server is started once, on the first child, with the workers' environment
(the malloc and gRPC settings a process reads when it starts), after the supervisor
set what every child reads (the metrics folder, the session secret). Nothing of the
gateway runs in it besides imports: no thread, no event loop, no socket of ours.

A child goes when the fork server goes, and the fork server goes when the supervisor
does (it reads a pipe from it): the same guarantee as with_parent.py's, one step
removed. `EXTPROC_CHILDREN=exec` starts them as fresh interpreters instead.

Imports nothing of the gateway at module level (the fork server imports preloaded.py)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from .fork_template import Signalled, become_command, fork_server
from .with_parent import die_with

CHILDREN_ENV = "EXTPROC_CHILDREN"           # "exec": a fresh interpreter per child
ENCODINGS_ENV = "EXTPROC_PRELOAD_ENCODINGS"  # the tokenizers the fork server loads, comma-separated
CONFIG_ENV = "EXTPROC_PRELOAD_CONFIG"        # the config whose guardrail detectors it makes
TEMPLATE_ENV = "EXTPROC_FORK_TEMPLATE"      # a warm template's socket (fork_template.py): forked from it
# What the fork server imports first, by name: the command line, the mock's routes (aiohttp;
# only when the config runs the mock), then the rest (preloaded.py).
PRELOAD = ("extproc.cli", "extproc.mock.server", "extproc.runtime.preloaded")


def forking_supported() -> bool:
    return (sys.platform.startswith("linux") and os.environ.get(CHILDREN_ENV, "fork") != "exec"
            and "forkserver" in multiprocessing.get_all_start_methods())


def _run(argv: list[str], parent: int) -> None:
    """In the forked child: goes when the fork server goes, then is `extproc <argv>`."""
    die_with(signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
    become_command(argv)
    import runpy
    runpy.run_module("extproc", run_name="__main__")          # as `python -m extproc <argv>`


class ForkedChild(Signalled):
    """A forked child as the supervisor handles a `subprocess.Popen`: pid, poll, wait,
    send_signal, terminate, kill, returncode."""

    def __init__(self, process) -> None:
        self._process = process
        self.pid: int = process.pid
        self.args = process._args[0] if hasattr(process, "_args") else []

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code


def _from_template(path: str) -> None:
    """multiprocessing's fork server, forked from a warm template (fork_template.py)
    instead of started as a fresh interpreter: the same `main` on the same kind of
    socket, with this process's environment as the fork server's."""
    import socket
    from multiprocessing import connection, forkserver, resource_tracker, util

    resource_tracker.ensure_running()
    state = forkserver._forkserver
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()
        try:
            pid = fork_server(path, listener.fileno(), alive_r, os.environ)
        finally:
            os.close(alive_r)
    state._forkserver_address, state._forkserver_alive_fd, state._forkserver_pid = address, alive_w, pid
    # The template's child, not this process's: it goes when alive_w closes, and
    # multiprocessing's check of it (waitpid) would fail. The resource tracker still runs.
    state.ensure_running = resource_tracker.ensure_running


class Forker:
    """Starts the fork server on first use, then forks `extproc` commands from it."""

    def __init__(self, server_env: Mapping[str, str], encodings: Sequence[str], config_path: str = "",
                 run_dir: str = "", mock: bool = False) -> None:
        self._preload = [name for name in PRELOAD if mock or name != "extproc.mock.server"]
        self._run_dir = run_dir           # where the fork server's socket goes (else the temp dir)
        # SPT_NOENV: setproctitle keeps to the command line's own bytes, leaving the
        # environment as the process started with it (/proc/<pid>/environ).
        self._server_env = {**server_env, ENCODINGS_ENV: ",".join(sorted(set(encodings))), CONFIG_ENV: config_path,
                            "SPT_NOENV": "1"}
        self._context = None

    def _started(self):
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(self._preload)
            saved = {name: os.environ.get(name) for name in self._server_env}
            os.environ.update(self._server_env)       # what the fork server starts with
            import tempfile
            temp = tempfile.tempdir
            # Its socket: in the run directory, gone with it (when the path fits a Unix
            # socket's 107 bytes with the two levels multiprocessing adds).
            if self._run_dir and len(self._run_dir) < 64:
                tempfile.tempdir = self._run_dir
            try:
                from multiprocessing import forkserver
                if os.environ.get(TEMPLATE_ENV):
                    _from_template(os.environ[TEMPLATE_ENV])
                else:
                    forkserver.ensure_running()
            finally:
                tempfile.tempdir = temp
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
            self._context = context
        return self._context

    def remove(self, folder: str) -> None:
        """`folder` removed, now, or as this process ends where the fork server's own
        folder is in it: multiprocessing removes that one as the process ends, and prints
        a traceback when it is already gone."""
        if self._context is None or folder != self._run_dir or len(folder) >= 64:
            shutil.rmtree(folder, ignore_errors=True)
            return
        from multiprocessing import util
        # After multiprocessing's own removal (exit priority -100): lower runs later.
        util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True}, exitpriority=-101)

    def spawn(self, argv: list[str]) -> ForkedChild:
        """`extproc <argv>` (argv without the interpreter and `-m extproc`), forked."""
        context = self._started()
        from multiprocessing import forkserver
        server_pid = forkserver._forkserver._forkserver_pid
        process = context.Process(target=_run, args=(list(argv), server_pid), name="extproc " + argv[0])
        process.start()
        return ForkedChild(process)
