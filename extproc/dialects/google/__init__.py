"""Google's Gemini API (and Vertex AI's Gemini): its codecs, requests, answers, streams and embeddings.
Part of the dialects package: the same import rules (dialects/__init__.py)."""
