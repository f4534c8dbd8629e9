"""Anthropic's Messages API: its codecs, requests, answers and streams.
Part of the dialects package: the same import rules (dialects/__init__.py)."""
