"""The guardrails' stages: requests, JSON answers, streams (read as they are generated, and held for plugins), the findings shared across workers and the scan time a key may buy.
Part of the stages package: the same import rules (stages/__init__.py)."""
