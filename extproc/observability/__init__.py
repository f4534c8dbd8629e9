"""Metrics (Prometheus, bounded labels), tag and per-key settings, and the `extproc usage`
report. Never imports the pipeline, stages, runtime or transport."""
