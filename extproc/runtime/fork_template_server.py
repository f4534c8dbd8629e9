"""The warm template's process (fork_template.py says what it is for and how it is
asked): imports what a fork server preloads, then forks on request.

    python -m extproc.runtime.fork_template_server SOCKET [ROOM]

ROOM (any text) only lengthens the command line: what a forked child can show as its
title (`ps`, /proc/<pid>/cmdline) is at most as long as the template's own command line.

Imported by nothing: it is a program."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from .fork_template import run_as_command
from .forked import PRELOAD
from .with_parent import die_with

_MAX_FDS = 8
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Besides what a fork server preloads: what a supervisor and the commands import that
# it does not (the console's templates, the doctor's clients; ~0.2 s).
_ALSO = ("extproc.console.server", "extproc.runtime.doctor")

def _become(request: dict, fds: list[int]) -> None:
    """In a forked child: the requester's environment, directory and streams."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    metrics_dir = os.environ[METRICS_ENV]
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.setdefault(METRICS_ENV, metrics_dir)
    import tempfile
    tempfile.tempdir = None                       # read again from TMPDIR
    os.chdir(request["cwd"])
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
        os.close(fd)


def _serve_fork_server(request: dict, fds: list[int]) -> None:
    from multiprocessing import forkserver
    listener_fd, alive_fd = fds[3], fds[4]
    _become(request, fds)
    import setproctitle
    setproctitle.setproctitle(f"extproc fork-server (for {request['parent']})")
    from . import preloaded          # imported already: the template's
    preloaded.prepare()              # the requester's config's detectors, its tokenizers
    forkserver.main(listener_fd, alive_fd, [])


def _serve_command(request: dict, fds: list[int], connection: socket.socket) -> None:
    """A waiter: forks the command, sends its pid, then its exit status when it ends."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    die_with(signal.SIGTERM)             # the waiter goes with the template, the command with it
    pid = os.fork()
    if pid == 0:
        connection.close()
        _become(request, fds)
        die_with(signal.SIGTERM)
        os._exit(run_as_command(request["argv"]))
    for fd in fds:
        os.close(fd)
    connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    try:
        _, status = os.waitpid(pid, 0)
        answer = {"status": os.waitstatus_to_exitcode(status)}
    except Exception as error:      # noqa: BLE001  told to the requester, who would else read a kill
        answer = {"error": f"the waiter failed: {error!r}"}
    try:
        connection.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass


def serve(path: str) -> None:
    """The template's loop: imports what a fork server preloads, then forks on request."""
    # The metrics module chooses prometheus-client's multiprocess values when it is
    # imported; a forked child writes its values where its own environment says (a
    # command whose environment names no folder: this one, beside the socket).
    metrics_dir = os.path.join(os.path.dirname(os.path.abspath(path)), "metrics")
    os.makedirs(metrics_dir, exist_ok=True)
    os.environ.setdefault(METRICS_ENV, metrics_dir)
    import importlib
    for name in (*PRELOAD, *_ALSO):     # by name, as multiprocessing's fork server preloads
        importlib.import_module(name)
    die_with(signal.SIGTERM)                   # goes with whoever started it
    # The shipped quickstart's detectors, which most requesters' configs share: made and
    # warmed once here rather than in each fork server (detectors_warmed.py).
    from ..config.envoy_config import shipped
    from .detectors_warmed import warm_detectors
    warm_detectors(shipped("config/quickstart.yaml"), strict_credentials=False)
    # setproctitle finds its room once, here, in the command line's own bytes: a child
    # clears the environment it would otherwise take (what ps shows of a child: its title).
    os.environ["SPT_NOENV"] = "1"
    import setproctitle
    setproctitle.setproctitle(f"extproc fork-template {path}")
    import gc
    gc.collect()
    gc.freeze()              # as preloaded.py: the children's collections leave all this alone
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # the kernel reaps the waiters
    # Bound and listening under another name, then renamed: whoever sees the path can
    # connect (a connect between bind and listen is refused).
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path + ".new")
    os.chmod(path + ".new", 0o600)
    listener.listen(64)
    os.rename(path + ".new", path)
    while True:
        connection, _ = listener.accept()
        try:
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, _MAX_FDS)
            request = json.loads(message)
        except (OSError, ValueError):
            connection.close()
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                listener.close()
                if request.get("kind") == "fork-server":
                    connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
                    connection.close()
                    _serve_fork_server(request, fds)
                else:
                    _serve_command(request, fds, connection)
                code = 0
            except SystemExit as leaving:  # a fork server ends so when its supervisor goes
                code = leaving.code if isinstance(leaving.code, int) else 0
            except BaseException:          # noqa: BLE001  the child's trouble, told on its stderr
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
