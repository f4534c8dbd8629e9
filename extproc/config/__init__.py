"""The filter config parsed once into typed, immutable objects; reading, checking and
generating Envoy configs (`extproc check`). Imports each config section's own parser
(guardrails, observability, store limits) and api; never the pipeline, stages or runtime."""
