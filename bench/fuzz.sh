#!/usr/bin/env bash
# The suite's property tests with ten times the examples each (tests/property_examples.py):
# any JSON and any bytes through real Envoy, the request reader, the guardrails' known
# findings, repeated keys and the workers' HTTP/2 server. ~10x the suite's time for them;
# tests that are not derandomized try new examples on every run.
#   bash bench/fuzz.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
LLMGW_EXAMPLES=deep exec .venv/bin/python -m pytest -p no:cacheprovider -n 0 -q \
  tests/test_any_json.py tests/test_any_bytes.py tests/test_request_reader_e2e.py \
  tests/test_known_findings.py tests/test_repeated_keys.py tests/test_h2_fuzz.py "$@"
