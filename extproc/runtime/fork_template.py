"""A warm template: one process that has imported the gateway and loaded its tokenizers
once, and forks, on request, what would otherwise start as a fresh interpreter: a
supervisor's fork server (forked.py), or an `extproc` command with its own environment,
working directory and standard streams.

Why: a fresh fork server spends ~3 s of CPU on imports and tables before its first
child, and a fresh `python -m extproc <command>` ~0.5-0.9 s; a host that starts many
gateways and commands (the test suite starts ~100 gateways and ~170 commands on two
cores) spends most of its CPU there. Figures: docs/decisions/fork-template.md.

`extproc up` uses a template when EXTPROC_FORK_TEMPLATE names its socket; without it
nothing here runs. Only what is read when a process starts differs from a fresh
interpreter: the template's environment at its own start (glibc's malloc settings,
gRPC's experiments, /proc/<pid>/environ). Whoever starts gateways from a template
starts the template with those, or starts such a gateway without it.

Protocol: one request per connection on a Unix socket (mode 0600): a JSON object and
the file descriptors it names (SCM_RIGHTS). The answer: a JSON line with the child's
pid, then, for a command, one with its exit status when it ends.

Here: what asks a template (the client side) and what a forked command runs; the
template's process is fork_template_server.py. Imports nothing of the gateway."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

def _request(path: str, request: dict, fds: Sequence[int]) -> tuple[socket.socket, int]:
    """Sends a request; returns the open connection and the child's pid. A standard
    stream this process has closed is /dev/null for the child."""
    connection = socket.socket(socket.AF_UNIX)
    null = None
    try:
        sent = []
        for fd in fds:
            try:
                os.fstat(fd)
            except OSError:
                null = null if null is not None else os.open(os.devnull, os.O_RDWR)
                fd = null
            sent.append(fd)
        connection.connect(path)
        socket.send_fds(connection, [json.dumps(request).encode()], sent)
        reader = connection.makefile("rb")
        line = reader.readline()
        if not line:
            raise RuntimeError(f"the fork template at {path} closed without an answer")
        return connection, int(json.loads(line)["pid"])
    except BaseException:
        connection.close()
        raise
    finally:
        if null is not None:
            os.close(null)


def fork_server(path: str, listener_fd: int, alive_fd: int, env: Mapping[str, str]) -> int:
    """The pid of a multiprocessing fork server forked from the template, serving on
    `listener_fd` until `alive_fd`'s other end closes, with this process's working
    directory and standard streams, `env` as its environment."""
    request = {"kind": "fork-server", "env": dict(env), "cwd": os.getcwd(), "parent": os.getpid()}
    connection, pid = _request(path, request, [0, 1, 2, listener_fd, alive_fd])
    connection.close()
    return pid


class Signalled:
    """A child's signals as `subprocess.Popen` sends them: only while its pid is still its
    own (`returncode` None: not reaped yet)."""

    pid: int
    returncode: int | None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class TemplateChild(Signalled):
    """An `extproc` command forked from the template, handled as a `subprocess.Popen`
    (pid, poll, wait, send_signal, terminate, kill, returncode)."""

    def __init__(self, path: str, argv: Sequence[str], env: Mapping[str, str], cwd: str,
                 stdio: Sequence[int]) -> None:
        self.args = list(argv)
        request = {"kind": "command", "argv": list(argv), "env": dict(env), "cwd": cwd}
        self._connection, self.pid = _request(path, request, stdio)
        self._reader = self._connection.makefile("rb")
        self.returncode: int | None = None
        # Why its status is not the command's own (None: it is): the waiter's error, or
        # its end without a word. Its returncode then reads as a kill.
        self.waiter_lost: str | None = None

    def poll(self) -> int | None:
        return self.wait(0) if self._ended(0) else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is not None and not self._ended(timeout):
                import subprocess
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read_status()
        return self.returncode

    def _ended(self, timeout: float) -> bool:
        """Whether its status (or the waiter's end) is there to read within `timeout`."""
        if self.returncode is not None:
            return True
        import select
        return bool(select.select([self._connection], [], [], timeout)[0])

    def _read_status(self) -> None:
        line = self._reader.readline()
        answer = json.loads(line) if line else {"error": "the waiter ended without the command's status"}
        if "status" in answer:
            self.returncode = int(answer["status"])
        else:           # the waiter failed or was killed (with the template): as a kill
            self.returncode, self.waiter_lost = -signal.SIGKILL, str(answer["error"])
        self._connection.close()



def become_command(argv: list[str]) -> None:
    # The fork server ignores SIGINT (a terminal's Ctrl-C reaches the supervisor, which
    # stops the children in order); the child is the command it runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["extproc", *argv]
    import setproctitle
    setproctitle.setproctitle(f"{sys.executable} -m extproc {' '.join(argv)}")     # what ps shows


def run_as_command(argv: list[str]) -> int:
    """`extproc <argv>` in this (forked) process, ended as the interpreter ends a program:
    its exit status, exit handlers run, streams flushed (fork_template.py's commands)."""
    become_command(argv)
    import runpy
    try:
        runpy.run_module("extproc", run_name="__main__")
        code = 0
    except SystemExit as leaving:
        if leaving.code is None or isinstance(leaving.code, int):
            code = leaving.code or 0
        else:                           # sys.exit("message"): printed, status 1
            print(leaving.code, file=sys.stderr)
            code = 1
    except BaseException:              # noqa: BLE001  as the interpreter: the traceback, status 1
        import traceback
        traceback.print_exc()
        code = 1
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code
