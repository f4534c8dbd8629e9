"""`extproc up` and `extproc serve`: start and watch the processes of a gateway.

The supervisor is the living parent the Envoy binary needs (it dies with its
parent), starts one ext_proc worker process per core (each its own Unix socket
and endpoint in Envoy's extproc cluster), serves the admin HTTP endpoint, and
stops everything in order on SIGTERM/SIGINT: Envoy first (no new requests),
then the workers (in-flight streams finish), then the mock.
"""

from __future__ import annotations

import secrets
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import envoy_config, envoy_mcp
from ..config.filter_config import GatewayConfig
from ..store import state_dir
from ..store.generation import clear_notice, read_notice
from .child_exits import ChildExits
from .recycling import RecyclesWorkers
from .crash_loop import CrashLoop
from .forked import Forker, forking_supported
from .lost_calls import take_dead_workers_journals
from .envoy_admin import admin_address, admin_request, drain_envoy
from .processes import connectable, raise_descriptor_limit, serving, stop_servers, terminate
from .with_parent import child_command
from ..pools.homes import SHARED_DIR_ENV
from .worker_env import worker_env

# How often Envoy writes its access log (stderr) when less than 64 KB is waiting.
ENVOY_LOG_FLUSH_MS = 1000
# How long start-up waits for each process to listen while it lives (one that exits fails the
# start at once): a host busy with other work can take a worker past 30 s of imports and
# tokenizer tables, which is slow, not broken.
START_SECONDS = 120.0
# The supervisor's loop: how often it looks while something is under way (a worker being
# replaced, one dead or stood in for: a crashed worker's path is handed to a living one at
# its exit, child_exits.py), and how often worker memory is checked.
TICK_SECONDS = 0.05
RECYCLE_CHECK_SECONDS = 5.0
class Supervisor(RecyclesWorkers):
    def __init__(self, config: GatewayConfig, *, envoy: dict | None, run_dir: Path,
                 workers: int | None = None, fixtures: str | None = None, owns_run_dir: bool = False) -> None:
        self.config = config
        self.envoy_config = envoy             # None: serve mode, Envoy runs elsewhere
        self.run_dir = run_dir
        self.owns_run_dir = owns_run_dir      # made for this run (`up`): removed when it stops
        self.worker_count = workers or config.server.workers or os.cpu_count() or 1
        self.fixtures = fixtures
        self.workers: dict[int, subprocess.Popen] = {}
        # Replaced workers: (process, when to tell it to stop). Until then Envoy moves its
        # connections to the successor as each one reaches its age.
        self.retiring: list[tuple[subprocess.Popen, float]] = []
        # Replacements under way: index -> (the worker replaced, its generation, deadline).
        # The loop checks them every tick, so a slow successor never holds the loop up.
        self.replacing: dict[int, tuple[subprocess.Popen, int, float]] = {}
        self.generation: dict[int, int] = {}
        self.crash_loops: dict[int, CrashLoop] = {}   # each index's back-off (crash_loop.py)
        # Crashed workers whose path Envoy connects to leads to a living worker's socket
        # until their successor listens: index -> the pid of the dead worker seen.
        self.stood_in: dict[int, int] = {}
        self.envoy: subprocess.Popen | None = None
        self.mock: subprocess.Popen | None = None
        self.aggregator: subprocess.Popen | None = None    # serves combined MCP profiles
        self.aggregator_crash_loop = CrashLoop()            # as a worker's: the same back-off
        self.admin = None
        self._stopping = False
        self._store_dir: str | None = None     # where a worker notes a store reset (/readyz)
        # The Python children, forked from a preloaded server (forked.py), with the workers'
        # environment; the mock warms o200k_base, what nearly every call counts with.
        encodings = {model.encoding for model in config.models.values()}
        self.forker = Forker(worker_env(), encodings | ({"o200k_base"} if config.mock_provider else set()),
                             config.path or "", str(run_dir), mock=bool(config.mock_provider)) \
            if forking_supported() else None

    # --- start --------------------------------------------------------------------

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._store_dir = state_dir(self.config.store)
        if self._store_dir:                   # /readyz tells of a store reset seen since this start
            clear_notice(self._store_dir)
        metrics_dir = self.run_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ[SHARED_DIR_ENV] = str(self.run_dir)     # the workers' shared pool homes (pools/homes.py)
        # Every worker binds MCP sessions with the same secret (stages/mcp/gate.py).
        os.environ.setdefault("LLMGW_SESSION_SECRET", secrets.token_hex(32))   # mcp/gate.py SESSION_SECRET_ENV
        if self.envoy_config is not None:       # only the Envoy started here may call the aggregator
            os.environ[envoy_mcp.AGGREGATOR_SECRET_ENV] = secrets.token_urlsafe(32)
        if self.config.mock_provider and self.envoy_config is not None:
            self.mock = self._spawn([sys.executable, "-m", "extproc", "mock-provider",
                                     "--config", self.config.path]
                                    + (["--fixtures", self.fixtures] if self.fixtures else []))
        for index in range(self.worker_count):
            self._start_worker(index)
        self._start_aggregator()
        self._wait_for_sockets()
        if self.mock is not None:
            self._wait_for_mock()
        if self.aggregator is not None:
            self._wait_for_listening(self.aggregator, self.config.mcp.aggregator.address, "the MCP aggregator")
        if self.envoy_config is not None:
            self._start_envoy()
        from .budget_gauge import BudgetRemaining
        from .admin import start_admin
        from .usage_report import admin_usage
        from .cache_admin import admin_cache
        if self.config.identity.admin_api is not None:       # keys, spend and the cache, over HTTP
            from .keys_admin import start_keys_admin
            self.keys_admin = start_keys_admin(
                self.config, usage=lambda query: admin_usage(self.config, query),
                cache=lambda method, path, query: admin_cache(self.config, method, path, query))
        if self.config.console is not None:                 # the pages for the platform team
            from ..console.server import start_console
            from .keys_cli import run_operation
            self.console = start_console(self.config, run_operation)
        # Last: its /readyz answering means every listener of this process is up.
        self.admin = start_admin(self.config.server.admin_address, self.ready, [BudgetRemaining(self.config)])

    def socket_path(self, index: int) -> str:
        """Where Envoy connects to worker `index`: a symlink to the socket of the worker
        process serving it now. (grpc unlinks its socket path when it stops, so a retiring
        worker must not share the path its replacement listens on.)"""
        return str(self.run_dir / f"extproc-{index}.sock")

    def _process_socket(self, index: int) -> Path:
        return self.run_dir / f"extproc-{index}.{self.generation[index]}.sock"

    def _point_at(self, index: int, serving: int | None = None) -> None:
        """Envoy's path for worker `index` leads to the socket of worker `serving` (its own
        by default)."""
        link = Path(self.socket_path(index))
        temporary = link.with_name(link.name + ".new")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(self._process_socket(index if serving is None else serving).name)  # relative
        os.replace(temporary, link)                                  # atomic swap

    def _stand_in(self, index: int) -> bool:
        """Points a crashed worker's path at a living worker's socket: Envoy's next
        connection there (its old ones died with the worker) reaches a worker that serves,
        instead of failing until a successor listens. False if no worker lives."""
        for other, process in self.workers.items():
            if other != index and other not in self.stood_in and serving(process) \
                    and connectable(str(self._process_socket(other))):
                self._point_at(index, other)
                return True
        return False

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        if self.forker is not None and argv[:3] == [sys.executable, "-m", "extproc"]:
            return self.forker.spawn(argv[3:])        # (its environment: the fork server's)
        command, parent = child_command(argv)         # it goes when the supervisor goes
        return subprocess.Popen(command, env={**os.environ, **(env or {}), **parent})

    def _start_worker(self, index: int, *, switch: bool = True) -> None:
        """A new worker process on a socket of its own; `switch`: Envoy's path points at it now
        (else the caller switches once it listens)."""
        if index in self.generation and self.workers[index].poll() is not None:
            self._process_socket(index).unlink(missing_ok=True)      # left by a crash
        self.generation[index] = self.generation.get(index, -1) + 1
        health = self.config.server.health_port
        extra = ["--health-address", f"0.0.0.0:{health}"] if health and index == 0 else []
        self.workers[index] = self._spawn([
            sys.executable, "-m", "extproc", "worker", "--config", self.config.path,
            "--address", f"unix:{self._process_socket(index)}", *extra], worker_env())
        if switch:
            self._point_at(index)
            self.crash_loops.setdefault(index, CrashLoop()).started()

    def _wait_for_sockets(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        for index in range(self.worker_count):
            while not connectable(self.socket_path(index)):
                if self.workers[index].poll() is not None:
                    raise RuntimeError(f"ext_proc worker {index} exited during start-up")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ext_proc worker {index} did not start within {timeout}s")
                time.sleep(0.05)

    def _start_aggregator(self) -> None:
        if self.config.mcp.combined_profiles and self.config.path:
            self.aggregator = self._spawn([sys.executable, "-m", "extproc", "mcp-aggregator",
                                           "--config", self.config.path])
            self.aggregator_crash_loop.started()

    def _wait_for_listening(self, process: subprocess.Popen, address: str, what: str,
                            timeout: float = START_SECONDS) -> None:
        host, _, port = address.rpartition(":")
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                return
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{what} exited during start-up") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not listen on {address}") from None
                time.sleep(0.05)

    def _wait_for_mock(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        for listener in [*self.config.mock_provider.get("listeners", []),
                         *(self.config.mock_provider.get("mcp_listeners") or [])]:
            address = (listener.get("host", "127.0.0.1"), int(listener["port"]))
            while True:
                try:
                    socket.create_connection(address, timeout=0.2).close()
                    break
                except OSError:
                    if self.mock.poll() is not None:
                        raise RuntimeError("the mock provider exited during start-up") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the mock provider did not listen on {address}") from None
                    time.sleep(0.05)

    def _start_envoy(self) -> None:
        rendered = envoy_config.with_workers(self.envoy_config,
                                             [self.socket_path(i) for i in range(self.worker_count)],
                                             self.config.server.worker_connection_age_s)
        rendered = envoy_config.fit_connection_cap(rendered, raise_descriptor_limit())
        path = envoy_config.write(rendered, self.run_dir / "envoy.yaml")
        self.envoy_admin = admin_address(rendered)
        if not self.envoy_admin.startswith("http://"):      # Envoy binds the socket; the folder must exist
            Path(self.envoy_admin).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Envoy writes its access log lines every flush interval (default 10 s) or per
        # 64 KB: a quiet gateway's lines would show up 10 s late. Its "misc" component
        # warns, at every start, once per work-in-progress proto the config uses (eleven
        # lines for json_to_metadata's parser and sse_to_metadata): errors only there.
        self.envoy = self._spawn([envoy_config.envoy_binary(), "-c", str(path),
                                  "--disable-hot-restart", "--log-level", "warn",
                                  "--component-log-level", "misc:error",
                                  "--file-flush-interval-msec", str(ENVOY_LOG_FLUSH_MS),
                                  "--concurrency", str(max(1, self.worker_count))])
        deadline = time.monotonic() + START_SECONDS
        while not self._envoy_ready():
            if self.envoy.poll() is not None:
                raise RuntimeError("Envoy exited during start-up (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Envoy did not become ready within {START_SECONDS:.0f}s")
            time.sleep(0.05)

    # --- health -------------------------------------------------------------------

    def _envoy_ready(self) -> bool:
        try:
            return admin_request(self.envoy_admin, "/ready", timeout=1)[0] == 200
        except OSError:
            return False

    def ready(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "stopping"
        # Ready when a call would succeed on every path Envoy connects to: each leads to a
        # socket a worker accepts on (its own, or a stand-in's while it restarts).
        down = [i for i in self.workers if not connectable(self.socket_path(i)) or not self._path_served(i)]
        if down:
            return False, f"workers down: {down}"
        if self.envoy_config is not None and not self._envoy_ready():
            return False, "envoy not ready"
        reset = read_notice(self._store_dir) if self._store_dir else None      # store/generation.py
        return True, "ready" if reset is None else f"ready; {reset}"

    def _path_served(self, index: int) -> bool:
        """Whether the process whose socket Envoy's path `index` leads to is not on its way
        out (killed: its socket accepts for a moment after the kill)."""
        try:
            target = os.readlink(self.socket_path(index))       # extproc-<worker>.<generation>.sock
            worker, generation = (int(part) for part in target.split("-", 1)[1].split(".")[:2])
        except (OSError, ValueError, IndexError):
            return True
        if self.generation.get(worker) == generation and worker in self.workers:
            return serving(self.workers[worker])
        old = self.replacing.get(worker)
        return serving(old[0]) if old is not None and old[1] == generation else True

    # --- run and stop -------------------------------------------------------------

    def run_forever(self) -> int:
        received: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda s, _f: received.append(s))
        exits = ChildExits()
        recycle_at = time.monotonic() + RECYCLE_CHECK_SECONDS
        try:
            while not received:
                # Idle (every child alive), it waits for a child's exit or the memory check;
                # while something is under way, it looks again every tick. (A dead child's
                # pidfd stays readable: waiting on it then would not wait at all.)
                if self._idle():
                    exits.wait(self._children(), recycle_at - time.monotonic(), TICK_SECONDS)
                else:
                    time.sleep(TICK_SECONDS)
                self._advance_replacements()
                if time.monotonic() >= recycle_at:
                    self._recycle_bloated_workers()
                    recycle_at = time.monotonic() + RECYCLE_CHECK_SECONDS
                if self.envoy is not None and self.envoy.poll() is not None:
                    print("extproc: Envoy exited unexpectedly; stopping", file=sys.stderr)
                    self.stop()
                    return 1
                self.restart_crashed_workers()
                self.restart_crashed_aggregator()
        finally:
            exits.close()
        self.stop()
        return 0

    def _children(self) -> list[subprocess.Popen]:
        return [process for process in (self.envoy, *self.workers.values(), self.aggregator, self.mock)
                if process is not None]

    def _idle(self) -> bool:
        """Nothing under way the loop must look at again: every child alive, no worker
        being replaced, stood in for or retiring."""
        return not (self.replacing or self.stood_in or self.retiring) and \
            all(process.poll() is None for process in self._children())

    def restart_crashed_workers(self) -> None:
        """A crashed worker's path is handed to a living worker at once, and the worker
        comes back on it (Envoy reconnects) as soon as its successor listens: started at
        once the first time, then after a growing delay while it keeps dying soon after
        start. Calls meanwhile go to the other workers."""
        if self._stopping:
            return
        for index, process in list(self.workers.items()):
            if index in self.replacing:          # a dead successor: the replacement reverts
                continue
            if process.poll() is None:
                if index in self.stood_in and connectable(str(self._process_socket(index))):
                    self._point_at(index)        # the successor listens: its path is its own again
                    del self.stood_in[index]
                continue
            loop = self.crash_loops.setdefault(index, CrashLoop())
            if self.stood_in.get(index) != process.pid:      # a death not seen yet
                _say_crashed(f"worker {index}", process, loop.crashed())
                self.stood_in[index] = process.pid
                self._stand_in(index)
                # Its calls in flight logged, its spend written and allotments handed back.
                take_dead_workers_journals(self.config.store)
            elif not connectable(self.socket_path(index)):    # every worker died: the first back serves
                self._stand_in(index)
            if loop.restart_due():
                self._start_worker(index, switch=False)
                loop.started()

    def restart_crashed_aggregator(self) -> None:
        """The MCP aggregator comes back as a worker does: at once the first time, then
        after a growing delay while it keeps dying soon after start."""
        if self._stopping or self.aggregator is None or self.aggregator.poll() is None:
            return
        _say_crashed("the MCP aggregator", self.aggregator, self.aggregator_crash_loop.crashed())
        if self.aggregator_crash_loop.restart_due():
            self._start_aggregator()

    def stop(self, grace: float = 30.0) -> None:
        """Envoy stops taking new requests, the ones in flight (long streams too) finish,
        then Envoy, the workers and the mock stop."""
        self._stopping = True
        if self.envoy is not None:
            self._drain_envoy(grace)
            terminate([self.envoy], 10)
        workers = list(self.workers.values()) + [process for process, _ in self.retiring] \
            + [process for process, _, _ in self.replacing.values()]
        helpers = [helper for helper in (self.mock, self.aggregator) if helper is not None]
        if self.envoy is not None:
            # Envoy is gone, so nothing calls the mock or the MCP aggregator: they stop with
            # the workers, which finish their streams in flight and settle what they hold.
            terminate(workers, grace, others=helpers, others_grace=5)
        else:
            # An Envoy of the deployment's may route MCP calls until the workers are gone.
            terminate(workers, grace)
            terminate(helpers, 5)
        stop_servers([server for server in (self.admin, getattr(self, "keys_admin", None)) if server is not None])
        if self.owns_run_dir:                 # Envoy's config, the socket links, metrics files
            if self.forker is not None:
                self.forker.remove(str(self.run_dir))
            else:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _drain_envoy(self, grace: float) -> None:
        drain_envoy(self.envoy_admin, grace)


def new_run_dir() -> Path:
    # Unix socket paths are limited to 108 bytes: keep them short, under /tmp.
    return Path(tempfile.mkdtemp(prefix="llmgw-"))


def _say_crashed(what: str, process: subprocess.Popen, crash: tuple[float, float] | None) -> None:
    if crash is not None:
        lived, delay = crash
        print(f"extproc: {what} exited ({process.returncode}) after {lived:.1f} s; "
              + (f"restarting in {delay:g} s" if delay else "restarting"), file=sys.stderr)
