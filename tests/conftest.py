from __future__ import annotations

import os

import pytest
from gateway_stack import GatewayStack, mark_tests_start
from warm_start import use_template
from openai import OpenAI

from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
from extproc.store.redis_store import RedisStore
from extproc.store.sqlite_store import SQLiteStore
from extproc.transport import compiled


def _one_tls_context_per_process() -> None:
    """httpx (and httpx2, which the OpenAI SDK uses) builds a TLS context for every client
    it makes, reading ~150 certificate authorities each time (`httpx.post` makes a client
    per call; each SDK client makes one): 30 ms of CPU on a quiet machine, 300 ms on a
    loaded one, for calls that are plain HTTP on loopback. The tests' clients share one
    default context per library instead."""
    import importlib

    for library in ("httpx", "httpx2"):
        try:
            transports = importlib.import_module(f"{library}._transports.default")
        except ImportError:
            continue
        make = transports.create_ssl_context
        shared = make()

        def create_ssl_context(verify=True, cert=None, trust_env=True, make=make, shared=shared):
            if verify is True and cert is None:
                return shared
            return make(verify=verify, cert=cert, trust_env=trust_env)

        transports.create_ssl_context = create_ssl_context
        importlib.import_module(library).create_ssl_context = create_ssl_context   # google-genai calls this one


_one_tls_context_per_process()
use_template()      # gateways and commands forked from a warm template (warm_start.py)


def pytest_sessionstart(session) -> None:
    # An editable install runs the compiled transport even after its .py changed.
    if stale := compiled.stale():
        pytest.exit(f"{', '.join(stale)}: compiled from an older source; `pip install -e .` again "
                    "(bash tests/run.sh does)", returncode=2)
    # The quickstart's Vertex AI provider reads its demo key from here, as under `extproc up`.
    os.environ.setdefault(DEMO_SERVICE_ACCOUNT_ENV, demo_service_account())


def pytest_collection_modifyitems(session, config, items) -> None:
    """The longest test files first, so the test processes end together: each process takes
    the next file when it is done with one (pytest-xdist's loadfile), and a long file
    taken last keeps one process busy while the others idle. A file's seconds are
    module_seconds.json's (a full run's, summed over its tests: `--durations=0`); a
    file not there goes after those that are, in its usual order."""
    import json
    from pathlib import Path

    seconds = json.loads((Path(__file__).parent / "module_seconds.json").read_text())
    items.sort(key=lambda item: -seconds.get(item.path.name, 0))   # stable: a file's tests stay in order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    mark_tests_start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a gateway shows what its Envoy and service said: the calls
    Envoy answered with 5xx (with Envoy's response details: which timeout, which reset)
    and the service's warnings, the causes a bare status in an assertion does not name."""
    report = yield
    if report.failed and call.when == "call":
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, GatewayStack) and getattr(value, "stderr_path", None):
                report.sections.append((f"gateway `{name}`: 5xx and warnings, last 30", value.trouble()))
    return report


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """The quickstart gateway, shared by the tests that do not change its config."""
    stack = GatewayStack(tmp_path_factory.mktemp("gateway"), workers=2).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def alice(gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key="sk-demo-alice", max_retries=0)


@pytest.fixture(scope="session")
def bob(gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key="sk-demo-bob", max_retries=0)


@pytest.fixture(scope="session")
def claude_code_prose(tmp_path_factory) -> list[str]:
    """The prose string literals of the installed Claude Code (test_injection_corpus's
    `claude_code_texts`), read once per suite: ~9 s of CPU over its 245 MB binary. The
    suite's test processes share them through a file in the run's own directory."""
    import fcntl
    import json

    from test_injection_corpus import CLAUDE_CODE, claude_code_texts
    if not CLAUDE_CODE.exists():
        pytest.fail("Claude Code is not installed: tests/run.sh installs it into .venv/claude-code")
    if not os.environ.get("PYTEST_XDIST_WORKER"):         # one process: nothing to share
        return claude_code_texts()
    shared = tmp_path_factory.getbasetemp().parent        # this run's, shared by its workers
    with open(shared / "claude-code-prose.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = shared / "claude-code-prose.json"
        if not path.exists():
            path.write_text(json.dumps(claude_code_texts()))
        return json.loads(path.read_text())


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server (Debian package, installed by tests/run.sh)."""
    import shutil
    import subprocess

    from gateway_stack import free_port, wait_for_port
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (tests/run.sh installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
    except RuntimeError as error:
        process.kill()
        pytest.fail(f"redis-server did not start: {error}")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request, tmp_path, redis_url):
    """Opens the store under test inside a scenario's event loop."""
    async def opened():
        if request.param == "sqlite":
            return SQLiteStore(str(tmp_path / "budgets.sqlite3"))
        store = RedisStore(redis_url)
        await store._redis.flushdb()
        return store
    return opened
