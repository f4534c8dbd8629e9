"""Assembles the pipeline a config asks for."""

from __future__ import annotations

from .config import GatewayConfig
from .pipeline import Pipeline
from .stages.admission import Admission
from .stages.attempt import AttemptRewrite
from .stages.record import Record
from .stages.resolve import ParseRequest, ResolveModel
from .stages.route import Route
from .stages.usage import ResponseUsage


def build_pipeline(config: GatewayConfig) -> Pipeline:
    # Order matters: each stage may rely on what the ones before it filled in.
    return Pipeline([
        Admission(),
        ParseRequest(),
        ResolveModel(),
        Route(),
        ResponseUsage(),
        Record(),
    ])


def build_upstream_pipeline(config: GatewayConfig) -> Pipeline:
    """For the ext_proc filter inside provider clusters: one run per attempt."""
    return Pipeline([AttemptRewrite()])
