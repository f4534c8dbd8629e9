"""Whether a watched file changed, and whether its writer is done with it.

A file written in place (an editor's save, `yaml.safe_dump` to the same path) is
truncated and then written: a look between the two sees an empty or half file, and
reading it then would refuse a config nobody wrote. A change is read only once the
file has kept the same signature for `SETTLE_SECONDS`; a Kubernetes ConfigMap swap
(a symlink renamed at once) settles on the first look."""

from __future__ import annotations

import os
import time

SETTLE_SECONDS = 0.05


def file_signature(path: str) -> tuple | None:
    """What changes when the file is replaced or rewritten; None when there is no file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_dev, stat.st_mtime_ns, stat.st_size


def settled_signature(path: str, seen: tuple | None) -> tuple | None:
    """The file's signature when it differs from `seen` and has stopped changing; `seen`
    while it is unchanged or still being written (so the caller looks again later)."""
    first = file_signature(path)
    if first == seen or first is None:
        return seen if first is not None else None
    time.sleep(SETTLE_SECONDS)
    return first if file_signature(path) == first else seen
