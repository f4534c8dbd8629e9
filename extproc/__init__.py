"""LLM gateway ext_proc service: Envoy calls it for every OpenAI-shaped request."""

__version__ = "0.1.0"
