"""Pipeline stages: one small class per concern, each with the hooks it needs.
They know nothing of HTTP/2 or processes: never import runtime, nor transport beyond
`transport.eager.task_needed`.

Hooks (all optional), called in pipeline order:
  request_headers(call, end_of_stream)   caller, endpoint, header hygiene
  request_body(call)                     parse, resolve, guard, reserve, route
  response_headers(call, headers, end_of_stream)   (a one-message response: run just before
                                          its body, on the status Envoy sent with it)
  response_body(call, chunk, end_of_stream) -> bytes | None   (None: unchanged)
  response_trailers(call, numbers)       the end of a stream Envoy passed through, with the
                                          usage numbers its sse_to_metadata filter read
  done(call)                             settle, record; runs exactly once per call
A stage refuses a request by raising GatewayError; it answers one itself by
raising ImmediateAnswer.

Grouped by concern (pipelines.py, the table of contents, imports them in these groups):
the request path here; guard/ (guardrails), budget/ (budgets, spend caps, meters),
cache/ (the response cache), runs/ (agent runs), mcp/ (the MCP gateway) and
accounting/ (usage, cost, what reached the caller, the record and the span).
"""
