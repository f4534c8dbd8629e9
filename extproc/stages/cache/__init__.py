"""The response cache's stages: the key, the lookup (exact and semantic), the store of an answer and a stream's replay.
Part of the stages package: the same import rules (stages/__init__.py)."""
