"""Agent runs: recognised, limited and loop-checked; the run's taint on the tools its model is offered.
Part of the stages package: the same import rules (stages/__init__.py)."""
