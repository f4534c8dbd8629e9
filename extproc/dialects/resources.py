"""Endpoints that generate nothing: the model lists the gateway answers itself, and the
Responses API's stored responses, passed to the provider that holds them."""

from __future__ import annotations

from .base import Codec
from .openai.dialect import OPENAI


class ModelList(Codec):
    kind = "models"
    dialect = OPENAI
    answered_here = True


class OneModel(Codec):
    kind = "model"
    dialect = OPENAI
    answered_here = True


class OwnUsage(Codec):
    """GET /v1/gateway/usage: the caller's own spend and budgets (stages/own_usage.py)."""
    kind = "gateway_usage"
    dialect = OPENAI
    reports_own_usage = True


class StoredResponse(Codec):
    """GET or DELETE /v1/responses/{id}, its cancel and its input items."""
    dialect = OPENAI
    names_stored_response = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
