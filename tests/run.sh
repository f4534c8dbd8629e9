#!/usr/bin/env bash
# The test command (README): installs everything it needs on a fresh machine, then runs the suite.
#   bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests start for real: Redis (shared budgets), Prometheus (scrapes the metrics).
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# A C compiler and Python's headers: the install compiles the workers' transport (setup.py),
# and the suite tests the compiled modules, as they ship.
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Quiet unless it fails: build back-ends are chatty.
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" > .venv/pip.log 2>&1; then
  cat .venv/pip.log
  exit 1
fi

# Claude Code, a real client of the Anthropic dialect (tests/test_claude_code_e2e.py): pinned,
# beside the venv. Node.js and npm come from Debian when the machine has none.
CLAUDE_CODE_VERSION=2.1.197
if [ ! -x .venv/claude-code/node_modules/.bin/claude ] \
    || ! grep -q "\"version\": \"$CLAUDE_CODE_VERSION\"" .venv/claude-code/node_modules/@anthropic-ai/claude-code/package.json; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm install --prefix .venv/claude-code --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" > .venv/npm.log 2>&1 || { cat .venv/npm.log; exit 1; }
fi

exec .venv/bin/python -m pytest "$@"
