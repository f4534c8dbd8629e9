"""The MCP pipeline's stages (stages/pipelines.py `build_mcp_pipeline`): one run per
JSON-RPC message on an MCP profile's route. The gate (caller, profile, session binding,
tool policy, rate limit, guardrails on arguments), the answer's guardrails and tool-list
filter, the call's span, the audit line; and the OAuth discovery answers. The model
calls' stages are the modules beside this package; these import from them only what both
pipelines share (identity, the key ring, the guard's helpers)."""
