"""Starts a real gateway (`extproc up`: real Envoy, ext_proc workers, mock provider)
on free ports, from the shipped quickstart configs with test-specific changes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import inspect
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

import httpx
import yaml

from extproc import yamltree
from extproc.mock.wire import RECORDINGS
from extproc.observability.metrics import FLUSH_INTERVAL
from warm_start import fork_server_pids, launch_extproc, run_extproc

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = RECORDINGS        # the recordings the mock ships, in folders below it
QUICKSTART_CONFIG = ROOT / "config" / "quickstart.yaml"
QUICKSTART_ENVOY = ROOT / "envoy" / "quickstart.yaml"


def settled_rows(store, timeout: float = 5) -> dict:
    """The store's counters (by "limit|scope value") once nothing is held: a worker settles
    a call just after its last reply, so a client can read the store a moment before. A
    counter's rows of every window are summed (the newest window's expiry kept): a test that
    spans the turn of the hour reads what it spent, not the new window's share of it."""
    async def poll() -> dict:
        deadline = time.monotonic() + timeout
        while True:
            rows = store.rows()
            if inspect.isawaitable(rows):          # the Redis store's methods are coroutines
                rows = await rows
            if all(row.held == 0 for row in rows) or time.monotonic() > deadline:
                return _windows_summed(rows)
            await asyncio.sleep(0.02)
    return asyncio.run(poll())


def _dump(tree) -> str:
    """YAML with libyaml's emitter: PyYAML's own takes ~0.6 s of CPU for a stack's two files."""
    return yaml.dump(tree, Dumper=yamltree.SafeDumper, sort_keys=False)


def _windows_summed(rows) -> dict:
    summed: dict = {}
    for row in sorted(rows, key=lambda row: row.expires):
        name = "|".join(row.counter.split("|")[:2])
        before = summed.get(name)
        summed[name] = row if before is None else type(row)(
            row.counter, before.spent + row.spent, before.held + row.held, row.expires)
    return summed


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a server a test starts. Taken below the kernel's
    ephemeral range: a port from bind(0) is one that any client connection (Redis,
    httpx, Envoy upstream) may take as its own before the server binds it (seen once:
    `Address already in use` at start). Never the same port twice in one test run."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    # The suite's processes (pytest-xdist: gw0, gw1, ...) each take their own share of the
    # range: two of them never hand out the same port.
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = (low - 15000) // count
    while True:
        if low > 20000:
            port = random.randrange(15000 + index * span, 15000 + (index + 1) * span)
        else:                                   # no room below the range: the kernel's pick
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a simulated vLLM pool's replicas listen
    on its port + i)."""
    while True:
        first = free_port()
        rest = range(first + 1, first + count)
        if any(port in _handed_out for port in rest):
            continue
        try:
            for port in rest:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(rest)
        return first


@contextlib.contextmanager
def envoy_running(config_path: Path, port: int, env: dict[str, str] | None = None):
    """Envoy alone on a config a test wrote, until the block ends: for what only Envoy
    itself can show (its filters, its ext_proc messages), without a gateway."""
    from extproc.config.envoy_config import envoy_binary
    envoy = subprocess.Popen([envoy_binary(), "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart",
                              "--log-level", "error"], env={**os.environ, **(env or {})},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=envoy)
        yield envoy
    finally:
        envoy.terminate()
        envoy.wait()


def wait_for_port(port: int, timeout: float = 15, process: subprocess.Popen | None = None) -> None:
    """Until something listens on 127.0.0.1:port (a server a test started itself)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process for port {port} exited") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout}s") from None
            time.sleep(0.05)


def quickstart_config(*, response_cache: bool = False) -> dict:
    """The shipped quickstart config. Without its response cache (and the meter of what it
    saved) unless asked: tests and benches that send the same call twice expect the
    provider to get both, and the benches measure the pipeline they always measured."""
    config = yamltree.safe_load(QUICKSTART_CONFIG.read_text())
    if not response_cache:
        config.pop("cache", None)
        metering = config.get("metering") or {}
        if "dimensions" in metering:
            metering["dimensions"] = [dims for dims in metering["dimensions"] if "cache" not in dims]
    # Files the quickstart names beside itself (the demo issuer's JWKS), wherever the copy is written.
    for provider in config.get("identity", {}).get("jwt", {}).get("providers", {}).values():
        if "jwks_file" in provider:
            provider["jwks_file"] = str(QUICKSTART_CONFIG.parent / provider["jwks_file"])
    return config


def check_provider_change(workdir: Path, provider: str, change: dict) -> str:
    """`extproc check`'s complaints (stderr and stdout; '' when it passes) about the
    quickstart with `change` made to one provider's settings (None removes a setting)."""
    config = quickstart_config()
    settings = config["providers"][provider]
    for key, value in change.items():
        if value is None:
            settings.pop(key)
        else:
            settings[key] = value
    path = workdir / "gateway.yaml"
    path.write_text(_dump(config))
    checked = run_extproc(["check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    return "" if checked.returncode == 0 else checked.stderr + checked.stdout


class GatewayStack:
    """One running gateway. `config` is the filter config as a dict (edited before start)."""

    launched: "weakref.WeakSet[GatewayStack]" = weakref.WeakSet()     # for mark_tests_start

    def __init__(self, workdir: Path, config: dict | None = None, workers: int = 1,
                 state_dir: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env or {}                  # for `extproc up`, besides this process's
        self.state_dir = state_dir or workdir / "state"
        self.config = copy.deepcopy(config or quickstart_config())
        self.workers = workers
        self.port = free_port()
        self.admin_port = free_port()
        self.envoy_admin_socket = workdir / "envoy-admin.sock"     # Envoy's admin (mode 0600)
        self.envoy_admin_port = free_port()                       # its read-only view (GET of stats...)
        self.process: subprocess.Popen | None = None
        self._records_lock = threading.Lock()      # log_records: tests read the log from threads
        self.mock_ports: dict[str, int] = {}       # the mock provider's listeners, by name
        self.mcp_ports: dict[str, int] = {}        # the demo MCP servers', by name
        self.pool_ports: dict[str, int] = {}       # the simulated vLLM pools' first replica's, by name
        self.test_mark = 0                         # the log's length when the running test began

    # --- configs --------------------------------------------------------------------

    def _write_configs(self) -> tuple[Path, Path]:
        """The filter config on this stack's ports, and the Envoy config made from it (as
        `extproc up` makes it), edited by `edit_envoy`."""
        from extproc.config.envoy_gen import generate
        from extproc.config.filter_config import load_config

        config = self.config
        config.setdefault("server", {})["admin"] = f"127.0.0.1:{self.admin_port}"
        config["server"]["workers"] = self.workers
        moved: dict[int, int] = {}          # quickstart port -> this stack's port
        for listener in config.get("mock_provider", {}).get("listeners", []):
            new_port = self.mock_ports.setdefault(listener["name"], free_port())
            moved[listener["port"]] = new_port
            listener["port"] = new_port
        for listener in config.get("mock_provider", {}).get("mcp_listeners", []):
            new_port = self.mcp_ports.setdefault(listener["name"], free_port())
            moved[listener["port"]] = new_port
            listener["port"] = new_port
        for pool in config.get("mock_provider", {}).get("vllm_pools", []):     # replica i on port + i
            if pool["name"] not in self.pool_ports:
                self.pool_ports[pool["name"]] = free_ports(pool["replicas"])
            moved.update({pool["port"] + i: self.pool_ports[pool["name"]] + i for i in range(pool["replicas"])})
            pool["port"] = self.pool_ports[pool["name"]]
        for provider in [*config.get("providers", {}).values(),
                         *((config.get("mcp") or {}).get("servers") or {}).values()]:
            entra = (provider.get("auth") or {}).get("entra") if isinstance(provider.get("auth"), dict) else None
            for holder, field in ((provider, "url"), (provider, "token_url"), (entra or {}, "token_url")):
                match = re.fullmatch(r"(http://127\.0\.0\.1:)(\d+)(.*)", holder.get(field, ""))
                if match and int(match[2]) in moved:
                    holder[field] = f"{match[1]}{moved[int(match[2])]}{match[3]}"
            lists = [provider.get("endpoints") or [], *((provider.get("adapters") or {}).values())]
            for addresses in lists:          # a pool provider's replicas (ip:port)
                for index, address in enumerate(addresses):
                    match = re.fullmatch(r"127\.0\.0\.1:(\d+)", str(address))
                    if match and int(match[1]) in moved:
                        addresses[index] = f"127.0.0.1:{moved[int(match[1])]}"
            for index, other in enumerate(provider.get("failover_urls") or []):     # MCP servers' replicas
                match = re.fullmatch(r"(http://127\.0\.0\.1:)(\d+)(.*)", other)
                if match and int(match[2]) in moved:
                    provider["failover_urls"][index] = f"{match[1]}{moved[int(match[2])]}{match[3]}"
        if config.get("mcp"):                # the MCP aggregator and Envoy's loopback listener for it
            config["mcp"]["aggregator"] = {"address": f"127.0.0.1:{free_port()}",
                                           "upstream_address": f"127.0.0.1:{free_port()}"}
        if config.get("cache"):             # the semantic cache's embedding calls: to this stack's Envoy
            config["cache"]["gateway_url"] = f"http://127.0.0.1:{self.port}"
        if config.get("console"):           # the console's listener, on a port of this stack's
            self.console_port = getattr(self, "console_port", None) or free_port()
            config["console"]["listen"] = f"127.0.0.1:{self.console_port}"
        config_path = self.write_filter_config(config)
        envoy = generate(load_config(str(config_path), strict_credentials=False),
                         listen=f"127.0.0.1:{self.port}", admin=str(self.envoy_admin_socket),
                         admin_read=f"127.0.0.1:{self.envoy_admin_port}")
        self.edit_envoy(envoy)
        envoy_path = self.workdir / "envoy.yaml"
        envoy_path.write_text(_dump(envoy))
        return config_path, envoy_path

    def write_filter_config(self, config: dict) -> Path:
        path = self.workdir / "gateway.yaml"
        path.write_text(_dump(config))
        return path

    def edit_envoy(self, envoy: dict) -> None:
        """Hook for tests that need a different Envoy config."""

    # --- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 240) -> "GatewayStack":
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> "GatewayStack":
        """`extproc up` started, not waited for (start_together: replicas start at once)."""
        config_path, envoy_path = self._write_configs()
        self.log_path = self.workdir / "gateway.log"        # stdout: the service's JSON lines
        self.stderr_path = self.workdir / "gateway.stderr"  # Envoy (access log too) and warnings
        self._log = open(self.log_path, "wb")
        self.test_mark = 0
        GatewayStack.launched.add(self)
        self._stderr = open(self.stderr_path, "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        # Forked from this test process's warm template when it can stand in (warm_start.py).
        self.process = launch_extproc(
            ["up", "--config", str(config_path), "--envoy", str(envoy_path), "--state-dir", str(self.state_dir),
             "--fixtures", str(FIXTURES), "--log"],      # --log: the logs on stdout/stderr, read below
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._stderr, env=env, cwd=self.workdir)
        return self

    def wait_ready(self, timeout: float = 240) -> "GatewayStack":      # (extproc up waits up to 120 s a process)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"extproc up exited:\n{self.stderr_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.admin_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway not ready:\n{self.stderr_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._stderr.close()

    # --- helpers --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def envoy_admin(self, path: str, params: dict | None = None, method: str = "GET") -> httpx.Response:
        """A request to Envoy's admin, on its Unix socket."""
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.envoy_admin_socket)), timeout=5) as client:
            return client.request(method, f"http://envoy{path}", params=params)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def mock_url(self, listener: str = "mock") -> str:
        return f"http://127.0.0.1:{self.mock_ports[listener]}"

    def replica_url(self, pool: str, index: int) -> str:
        """Replica `index` of a simulated vLLM pool of the mock."""
        return f"http://127.0.0.1:{self.pool_ports[pool] + index}"

    def received(self, listener: str = "mock") -> list[dict]:
        return httpx.get(f"{self.mock_url(listener)}/_mock/requests").json()

    def clear_received(self) -> None:
        for name in self.mock_ports:
            httpx.delete(f"{self.mock_url(name)}/_mock/requests")

    def descendants(self) -> list[int]:
        """The processes `extproc up` started, and theirs (its Python children are forked
        from its fork server, runtime/forked.py, which a warm template forked when the
        stack started from one)."""
        servers = fork_server_pids(self.process.pid)
        found, parents = list(servers), [self.process.pid, *servers]
        while parents:
            out = subprocess.run(["pgrep", "-P", ",".join(map(str, parents))], capture_output=True, text=True).stdout
            parents = [int(pid) for pid in out.split()]
            found += parents
        return found

    def worker_pids(self) -> list[int]:
        """The ext_proc worker processes running now."""
        pids = []
        for pid in self.descendants():
            try:
                if b" worker " in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                    pids.append(pid)
            except OSError:          # gone meanwhile
                pass
        return pids

    def expected_cost(self, record: dict) -> float:
        """What a log record's call costs at its config's prices (worked out here, not by
        the gateway's code): cached input tokens at the cached price, the rest at input."""
        model = self.config["models"][record["model"]]
        [backend] = [b for b in model["backends"] if b["provider"] == record["backend"]]
        price = backend.get("price") or model["price"]
        cached = record["cached_tokens"]
        return ((record["input_tokens"] - cached) * price["input"]
                + cached * price.get("cached_input", price["input"])
                + record["output_tokens"] * price["output"]) / 1e6

    def log_records(self) -> list[dict]:
        """The service's one-JSON-line-per-request records (Envoy's own lines excluded).
        Read on from where the last reading stopped: tests poll this, and a session's log
        grows to thousands of lines that each poll would parse again."""
        with self._records_lock:
            read = getattr(self, "_records_read", None)
            if read is None or read[0] != self.log_path:
                read = self._records_read = (self.log_path, [0], [])
            _, offset, records = read
            with open(self.log_path, "rb") as log:
                if os.fstat(log.fileno()).st_size < offset[0]:      # written anew
                    offset[0], records[:] = 0, []
                log.seek(offset[0])
                chunk = log.read()
            whole = chunk.rfind(b"\n") + 1        # whole lines only: a worker may be midway through one
            offset[0] += whole
            for line in chunk[:whole].decode("utf-8", "replace").split("\n"):
                if line.startswith("{") and '"config_version"' in line:
                    records.append(json.loads(line))
            return list(records)

    def trouble(self, lines: int = 30) -> str:
        """Envoy's 5xx access-log lines and every warning or error the stack wrote, the last
        `lines` of them (tests/conftest.py shows them under a failed test)."""
        found = []
        for path in (self.stderr_path, self.log_path):
            with open(path, "rb") as log:
                for line in log.read().decode("utf-8", "replace").splitlines():
                    if ('"source":"envoy"' in line and '"status":5' in line) or any(
                            mark in line for mark in ("[warning]", "[error]", "[critical]", " WARNING ", " ERROR ",
                                                      "Traceback")):
                        found.append(line[:600])
        return "\n".join(found[-lines:]) or "(none)"

    def metrics(self, expected: str = "", timeout: float = 5) -> str:
        """The /metrics page once it shows `expected` (workers write their updates to
        the shared files every metrics.FLUSH_INTERVAL, so a fresh count can lag)."""
        deadline = time.monotonic() + timeout
        while True:
            text = httpx.get(f"{self.admin_url}/metrics").text
            if expected in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def metric_reaches(self, series: str, minimum: float, timeout: float = 5) -> float:
        """The value of the first /metrics line that starts with `series` once it reaches
        `minimum` (a series shows 0 from its first update until the worker's next flush
        writes the count); what it is at the deadline otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in httpx.get(f"{self.admin_url}/metrics").text.splitlines()
                     if line.startswith(series)]
            value = float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0
            if value >= minimum or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def phase_counts(self, *, flushed: bool = False) -> collections.defaultdict:
        """ext_proc messages handled so far, per phase (gateway_extproc_processing_seconds'
        counts; 0 for a phase not seen). `flushed`: once the workers have written what
        earlier calls did."""
        if flushed:
            time.sleep(3 * FLUSH_INTERVAL)
        text = httpx.get(f"{self.admin_url}/metrics").text
        return collections.defaultdict(float, {
            phase: float(count) for phase, count in
            re.findall(r'gateway_extproc_processing_seconds_count\{phase="(\w+)"\} (\S+)', text)})

    def phase_moved(self, before: dict[str, float], phase: str, at_least: float, timeout: float = 5) -> float:
        """How much a phase's count moved since `before`, once every worker has flushed."""
        return self.phases_moved(before, {phase: at_least}, timeout)[phase]

    def phases_moved(self, before: dict[str, float], at_least: dict[str, float],
                     timeout: float = 5) -> dict[str, float]:
        """How much each phase's count moved since `before`, once every worker has flushed
        (one wait for them all), polled until each moved `at_least` (or `timeout`)."""
        deadline = time.monotonic() + timeout
        time.sleep(3 * FLUSH_INTERVAL)
        while True:
            counts = self.phase_counts()
            moved = {phase: counts[phase] - before[phase] for phase in at_least}
            if all(moved[p] >= n for p, n in at_least.items()) or time.monotonic() > deadline:
                return moved
            time.sleep(FLUSH_INTERVAL)

    def log_count(self) -> int:
        """How many records the log holds now: `wait_for_record(after=...)` skips them."""
        return len(self.log_records())

    def wait_for_record(self, request_id: str | None = None, *, predicate=None,
                        timeout: float = 10, after: int | None = None) -> dict:
        """The newest record of this request id and/or matching `predicate`, among those
        written after `after` (by default since the running test began: a shared stack's
        log holds earlier tests' calls, which a loose predicate would match while this
        test's own line is still being written)."""
        after = self.test_mark if after is None else after
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in reversed(self.log_records()[after:]):
                if (request_id is None or request_id in (record["request_id"], record.get("client_request_id"))) and (
                        predicate is None or _matches(predicate, record)):
                    return record
            time.sleep(0.05)
        raise AssertionError(f"no log record for {request_id or predicate}")


def mark_tests_start() -> None:
    """Each running stack's log length, taken as a test begins (`wait_for_record`'s default)."""
    for stack in list(GatewayStack.launched):
        if stack.process is not None and stack.process.poll() is None:
            stack.test_mark = stack.log_count()


def _matches(predicate, record: dict) -> bool:
    """A predicate written for one kind of record is false of another: a session stack's
    log holds every test's calls, and an MCP call's record has no `path`."""
    try:
        return bool(predicate(record))
    except (KeyError, TypeError):
        return False


def start_together(*stacks: GatewayStack) -> tuple[GatewayStack, ...]:
    """Replicas started at once (each waits for the others' CPU, not their whole start);
    all stopped again when one does not come up."""
    for stack in stacks:
        stack.launch()
    try:
        for stack in stacks:
            stack.wait_ready()
    except Exception:
        for stack in stacks:
            stack.stop()
        raise
    return stacks
