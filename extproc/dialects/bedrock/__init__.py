"""AWS Bedrock's Converse API: its codec, requests, answers and event streams.
Part of the dialects package: the same import rules (dialects/__init__.py)."""
