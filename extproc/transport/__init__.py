"""HTTP/2 and gRPC on the event loop, each message answered in the read that brought it
(compiled with mypyc). Knows nothing of ext_proc or LLMs: imports nothing else from extproc."""
