"""`extproc check`: is this filter config valid, and does it agree with its Envoy config?"""

from __future__ import annotations

import signal
import sys

from . import envoy_config, envoy_features
from .envoy_contract import failover_route
from .filter_config import load_config
from ..guardrails.config import detectors_not_made
from ..yamltree import ConfigError


def check(config_path: str, envoy_path: str | None) -> tuple[list[str], str]:
    """Returns (problem lines, summary). Missing credentials are reported as warnings
    on stderr by the caller's environment, not as problems: a config is checked on
    machines that do not hold production secrets."""
    problems: list[str] = []
    try:
        # The PII and injection detectors are the workers' to make (~1 s of CPU): their rules
        # are the gateway's own, checked when it is built; an operator's banned patterns are
        # compiled here all the same.
        with detectors_not_made():
            config = load_config(config_path, strict_credentials=False)
    except ConfigError as error:
        return error.problems, ""
    summary = (f"{config_path}: OK ({len(config.models)} models, {len(config.providers)} providers, "
               f"{len(config.keys_by_hash)} keys)")
    for warning in config.warnings:
        print(warning, file=sys.stderr)
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
        else:
            problems.extend(_connection_age_problems(config, envoy, envoy_path))
            problems.extend(_worker_endpoint_problems(config, envoy, config_path, envoy_path))
        problems.extend(_failover_route_problems(config, envoy, config_path, envoy_path))
        problems.extend(f"{envoy_path}: {problem}" for problem in envoy_features.feature_problems(envoy))
        problems.extend(envoy_config.validate(envoy_path))
        summary += f"; {envoy_path}: OK (clusters agree, envoy --mode validate passed)"
    return problems, summary


def _failover_route_problems(config, envoy: dict, config_path: str, envoy_path: str) -> list[str]:
    """A virtual model of N backends is routed on `x-gateway-route: failover-N`; that
    route's retries must let each backend be tried once (num_retries >= N-1), else the
    later backends are never tried."""
    retries = envoy_config.failover_routes(envoy)
    problems = []
    for model in config.models.values():
        if not model.is_virtual:
            continue
        needed, name = len(model.backends) - 1, failover_route(len(model.backends))
        if retries.get(name, -1) < needed:
            problems.append(f"{config_path}: models.{model.name}: its {len(model.backends)} backends need a "
                            f"route matching x-gateway-route: {name} with retry_policy.num_retries of at "
                            f"least {needed} in {envoy_path}" + (f" (it has {retries[name]})" if name in retries else ""))
    return problems


def _worker_endpoint_problems(config, envoy: dict, config_path: str, envoy_path: str) -> list[str]:
    """`extproc serve` starts server.workers workers, one socket each: Envoy's extproc cluster
    must list as many (fewer leave workers idle; more send calls to sockets nobody serves).
    `extproc up` writes the endpoints itself, so a config with `workers: auto` is not held to it."""
    endpoints = envoy_config.extproc_endpoints(envoy)
    if not config.server.workers or len(endpoints) == config.server.workers:
        return []
    return [f"{envoy_path}: clusters.{envoy_config.EXTPROC_CLUSTER}.load_assignment: {len(endpoints)} endpoints, "
            f"but {config_path} has server.workers {config.server.workers}: make them equal"]


def _connection_age_problems(config, envoy: dict, envoy_path: str) -> list[str]:
    """A replaced worker stops only once Envoy has drained its connections, which Envoy
    does at the extproc cluster's max_connection_duration. Left to the worker's own
    gRPC server (its backstop, at twice the age), the close now and then refuses a new
    stream, which fails a request. So the two settings must agree."""
    age = config.server.worker_connection_age_s
    where = (f"{envoy_path}: clusters.{envoy_config.EXTPROC_CLUSTER}.typed_extension_protocol_options"
             ".common_http_protocol_options.max_connection_duration")
    try:
        duration = envoy_config.extproc_connection_duration(envoy)
    except ValueError as error:
        return [f"{where}: not a duration: {error}"]
    if duration is None:
        return [f"{where}: not set; set it to {age}s (server.worker_connection_age_s) so that Envoy "
                f"drains worker connections itself"]
    if duration != age:
        return [f"{where}: {duration:g}s, but server.worker_connection_age_s is {age}: make them equal"]
    return []


signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `extproc check ... | head` must not traceback
