"""Children that go when the supervisor goes, even on SIGKILL (Linux's PR_SET_PDEATHSIG).

The death signal is asked for by the child itself, after exec: a `preexec_fn` would run
Python (and dlopen libc) between fork and exec, which is unsafe once the parent has
threads (gRPC's pollers, the admin server's), and it forces fork where Python would
otherwise use vfork. Python children (`python -m extproc ...`) ask for it at start
(`die_with_parent`, from the CLI) when EXTPROC_PARENT_PID is set; other programs
(Envoy) are started through a few lines of Python that ask for it the same way and exec
them (the request survives exec).
Either way the child checks that its parent is still the one that started it: a parent
gone before the request was made is seen, not missed.

Imports nothing of the gateway: the CLI calls it before anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "EXTPROC_PARENT_PID"
_PR_SET_PDEATHSIG = 1

# Asks for the death signal as a Python child does, then becomes `argv[1:]`.
_EXEC_WITH_PARENT = ("import os, sys\n"
                     "from extproc.runtime.with_parent import die_with_parent\n"
                     "die_with_parent()\n"
                     "os.execv(sys.argv[1], sys.argv[1:])\n")


def child_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line and the environment entries that start `argv` as a child that
    goes when this process goes."""
    env = {PARENT_ENV: str(os.getpid())}
    if argv[:3] == [sys.executable, "-m", "extproc"]:
        return argv, env
    return [sys.executable, "-c", _EXEC_WITH_PARENT, *argv], env


def die_with(signum: int) -> None:
    """This process gets `signum` when its parent goes (Linux's PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> None:
    """In a child started by child_command: SIGTERM when the parent goes; exits now if it
    has gone already."""
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):        # not Linux: the supervisor's stop still ends it
        return
    if os.getppid() != int(parent):
        sys.exit(1)
