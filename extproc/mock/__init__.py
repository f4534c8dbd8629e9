"""The mock provider: an upstream speaking OpenAI's API and Anthropic's Messages API for
the quickstart, tests and benchmarks, faithful to recorded provider traffic. server.py
serves the listeners; openai.py and anthropic.py answer each dialect (shapes.py and
anthropic_shapes.py hold their bodies and events); listener.py, wire.py and echo.py hold
what both share. Imports api only; nothing of the gateway."""
