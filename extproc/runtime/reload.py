"""Hot reload of the filter config, the way Kubernetes updates a mounted ConfigMap.

Kubernetes swaps a `..data` symlink to a new directory; the file path stays the
same but resolves to a new inode. Each worker polls `os.stat` (which follows
symlinks) once a second, of the config file and of every credential file it names
(a mounted Secret rotated in place, an Entra ID token rewritten by its sidecar); on a
change it parses and validates the config again and swaps the whole runtime at once.
Requests in flight keep the config they started with. An invalid file is refused: the
old config stays, the problems are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging

from ..config.files import SETTLE_SECONDS, file_signature
from ..config.filter_config import GatewayConfig, load_config
from ..yamltree import ConfigError
from ..observability import metrics

log = logging.getLogger("extproc.reload")


def watched_files(config: GatewayConfig) -> tuple[str, ...]:
    """The credential files a config reads (the config file itself is watched apart)."""
    return tuple(sorted({p.credential_file for p in config.providers.values() if p.credential_file}))


async def watch_config(path: str, apply, config: GatewayConfig, interval: float = 1.0) -> None:
    """Calls apply(new_config) whenever `path`, or a credential file it names, changes
    and the config is valid."""
    seen = file_signature(path)
    credentials = {file: file_signature(file) for file in watched_files(config)}
    while True:
        await asyncio.sleep(interval)
        current = file_signature(path)
        if current is None:
            if seen is not None:
                log.error("config file %s disappeared; keeping the config in force", path)
                metrics.config_reloads.labels("missing").inc()
            seen = None
            continue
        rotated = {file: file_signature(file) for file in credentials}
        if current == seen and rotated == credentials:
            continue
        await asyncio.sleep(SETTLE_SECONDS)     # a file written in place: read it once its writer is done
        if file_signature(path) != current or {file: file_signature(file) for file in credentials} != rotated:
            continue
        seen, credentials = current, rotated
        try:
            config = load_config(path)
        except ConfigError as error:
            for line in error.problems:
                log.error("config reload refused: %s", line)
            metrics.config_reloads.labels("invalid").inc()
            continue
        except Exception:   # noqa: BLE001 - a reload must never take the worker down
            log.exception("config reload failed")
            metrics.config_reloads.labels("invalid").inc()
            continue
        credentials = {file: file_signature(file) for file in watched_files(config)}
        apply(config)
        metrics.config_reloads.labels("ok").inc()
        log.warning("config reloaded: version %s", config.version)
