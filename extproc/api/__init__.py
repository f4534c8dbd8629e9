"""What the gateway knows of the LLM APIs it speaks: endpoints, body shapes, SSE, usage,
tokens and prices. Pure knowledge: imports nothing else from extproc."""
