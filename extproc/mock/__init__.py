"""The mock provider: an OpenAI-compatible upstream for the quickstart, tests and
benchmarks, faithful to recorded provider traffic. Imports api only; nothing of the gateway."""
