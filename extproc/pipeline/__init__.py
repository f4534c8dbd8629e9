"""One call through the gateway: the per-request context (`Call`), the runner that takes
each ext_proc message through the stages, the ext_proc replies and errors, and the stage
list a config asks for. Knows nothing of HTTP/2 or processes: never imports runtime or transport."""
