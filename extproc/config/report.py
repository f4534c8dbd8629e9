"""A config loaded for a command: its problems and warnings said on stderr, one per line."""

from __future__ import annotations

import sys

from ..yamltree import ConfigError
from .filter_config import load_config


def load_or_report(path: str, *, strict_credentials: bool = True):
    """The config at `path`, its warnings on stderr; None, its problems on stderr, when it
    cannot be loaded (a command then exits 2)."""
    try:
        config = load_config(path, strict_credentials=strict_credentials)
    except ConfigError as error:
        for line in error.problems:
            print(line, file=sys.stderr)
        return None
    for line in config.warnings:
        print(line, file=sys.stderr)
    return config
