"""OpenAI's API family: Chat Completions, Completions, Embeddings and the Responses API (and Azure's paths): its codecs, requests, answers and streams.
Part of the dialects package: the same import rules (dialects/__init__.py)."""
