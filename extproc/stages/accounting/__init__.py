"""What a call used and cost, and its record: usage from every answer shape, cut streams, what reached the caller, the cost header, the log line and the span.
Part of the stages package: the same import rules (stages/__init__.py)."""
