"""The modules setup.py compiles with mypyc, and whether they run compiled here.

They are a worker's per-message path below the pipeline: the HTTP/2 frames, the
gRPC calls over them, the eager start of a message's coroutine, and the ext_proc
messages read from and written as bytes (extproc/wire), plain Python over bytes.
Compiled, the transport costs ~23% less CPU per call, and the gateway does 5-13%
more JSON requests per second (bench/README.md "The transport compiled"). The
pipeline gained nothing measurable compiled: its time is in C already (orjson,
RE2, SQLite), so it stays plain Python.

Without a C compiler, or with EXTPROC_PURE_PYTHON=1 at install time, the same
modules install as plain Python and behave the same.
"""

from __future__ import annotations

import importlib
import os
import sysconfig

MODULES = ("extproc.transport.frames", "extproc.transport.headers", "extproc.transport.sending",
           "extproc.transport.http2", "extproc.transport.grpc_calls", "extproc.transport.grpc_h2",
           "extproc.transport.eager", "extproc.wire.reading", "extproc.wire.writing")


def compiled() -> dict[str, bool]:
    """Each module: whether its import gave the compiled one."""
    return {name: not (importlib.import_module(name).__file__ or "").endswith(".py") for name in MODULES}


def stale() -> list[str]:
    """Compiled modules whose source changed after they were built: an editable install
    edited since its last `pip install -e .` still runs the old code (an extension
    module wins over the .py beside it). An installed wheel's files come together (in
    any order, so their times say nothing): only a source tree is looked at."""
    installed = {os.path.realpath(sysconfig.get_path(kind)) for kind in ("purelib", "platlib")}
    found = []
    for name in MODULES:
        path = importlib.import_module(name).__file__ or ""
        if path.endswith(".py") or any(os.path.realpath(path).startswith(root + os.sep) for root in installed):
            continue
        source = os.path.join(os.path.dirname(path), name.rsplit(".", 1)[1] + ".py")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(path):
            found.append(name)
    return found
