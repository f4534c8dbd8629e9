"""`extproc check`: is this filter config valid, and does it agree with its Envoy config?"""

from __future__ import annotations

import signal

from . import envoy_config
from .config import load_config
from .yamlread import ConfigError


def check(config_path: str, envoy_path: str | None) -> tuple[list[str], str]:
    """Returns (problem lines, summary). Missing credentials are reported as warnings
    on stderr by the caller's environment, not as problems: a config is checked on
    machines that do not hold production secrets."""
    problems: list[str] = []
    try:
        config = load_config(config_path, strict_credentials=False)
    except ConfigError as error:
        return error.problems, ""
    summary = (f"{config_path}: OK ({len(config.models)} models, {len(config.providers)} providers, "
               f"{len(config.keys_by_hash)} keys)")
    if envoy_path:
        try:
            envoy = envoy_config.load(envoy_path)
            clusters = envoy_config.cluster_names(envoy)
        except (OSError, ValueError, AttributeError, TypeError) as error:
            return [f"{envoy_path}: cannot read the Envoy config: {error}"], ""
        except Exception as error:  # yaml errors
            return [f"{envoy_path}: invalid YAML: {error}"], ""
        for name, provider in config.providers.items():
            if provider.cluster not in clusters:
                problems.append(f"{config_path}: providers.{name}.cluster: cluster "
                                f"{provider.cluster!r} is not defined in {envoy_path}")
        if envoy_config.EXTPROC_CLUSTER not in clusters:
            problems.append(f"{envoy_path}: static_resources.clusters: no cluster named "
                            f"{envoy_config.EXTPROC_CLUSTER!r} for the ext_proc service")
        problems.extend(envoy_config.validate(envoy_path))
        summary += f"; {envoy_path}: OK (clusters agree, envoy --mode validate passed)"
    return problems, summary


signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `extproc check ... | head` must not traceback
