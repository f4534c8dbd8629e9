"""Budgets and rate limits: reserved before the call, settled after it; spend caps per call and session; the meters of spend by dimension.
Part of the stages package: the same import rules (stages/__init__.py)."""
