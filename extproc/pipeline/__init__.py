"""One call through the gateway: the per-request context (`Call`), the runner that takes
each ext_proc message through the stages, the ext_proc replies and errors, and what a stage
is (`stage.py`). The stages themselves, and the lists of them a config asks for, are in
extproc.stages, which this package never imports. Knows nothing of HTTP/2 or processes:
never imports runtime or transport."""
