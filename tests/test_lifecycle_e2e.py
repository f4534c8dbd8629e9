"""The gateway's life through real Envoy: hot reload the Kubernetes way, worker
replacement, health, and graceful shutdown."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from gateway_stack import GatewayStack, quickstart_config
from warm_start import run_extproc

ALICE = {"authorization": "Bearer sk-demo-alice"}


class ConfigMapStack(GatewayStack):
    """Mounts the filter config as Kubernetes mounts a ConfigMap: gateway.yaml ->
    ..data/gateway.yaml, ..data -> ..<timestamp>/, swapped by replacing ..data."""

    def write_filter_config(self, config: dict) -> Path:
        self.mount = self.workdir / "configmap"
        self.mount.mkdir(exist_ok=True)
        self.publish(config, "..v1")
        link = self.mount / "gateway.yaml"
        if not link.is_symlink():
            link.symlink_to("..data/gateway.yaml")
        return link

    def publish(self, config: dict | str, version: str) -> None:
        folder = self.mount / version
        folder.mkdir()
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (folder / "gateway.yaml").write_text(text)
        tmp = self.mount / "..data_tmp"
        tmp.symlink_to(version)
        os.replace(tmp, self.mount / "..data")          # atomic, like the kubelet


def test_configmap_swap_reloads_without_failing_requests(tmp_path):
    config = quickstart_config()
    stack = ConfigMapStack(tmp_path, config, workers=2).start()
    statuses: list[int] = []
    stop = threading.Event()

    def traffic():
        with httpx.Client(headers=ALICE, timeout=10) as client:
            while not stop.is_set():
                response = client.post(f"{stack.base_url}/chat/completions", json={
                    "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "steady"}]})
                statuses.append(response.status_code)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        # Routing change: gpt-4o-mini is now served by the backend model gpt-4o.
        changed = quickstart_config()
        changed["models"]["gpt-4o-mini"]["backends"] = [{"provider": "mock", "model": "gpt-4o"}]
        stack.publish(changed, "..v2")
        started = time.monotonic()
        in_a_row = 0                      # every worker must have switched: 10 answers in a row
        while time.monotonic() - started < 10 and in_a_row < 10:
            served = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "which?"}]}).json()
            in_a_row = in_a_row + 1 if served["model"] == "gpt-4o" else 0
            time.sleep(0.05)
        took = time.monotonic() - started
        assert in_a_row == 10 and took < 5, took
        # An invalid config is refused; traffic continues on the one in force.
        stack.publish("models: [this is: not valid\n", "..v3")
        time.sleep(2.5)
        after = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still?"}]})
        assert after.status_code == 200 and after.json()["model"] == "gpt-4o"
        metrics = stack.metrics('gateway_config_reloads_total{result="invalid"}')
        assert 'gateway_config_reloads_total{result="invalid"}' in metrics
        assert 'gateway_config_reloads_total{result="ok"}' in metrics
        assert "config reload refused" in stack.stderr_path.read_text()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        stack.stop()
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    versions = {r["config_version"] for r in stack.log_records()}
    assert len(versions) == 2                          # the log line says which config served


def test_sigterm_lets_a_long_stream_finish_records_its_usage_and_leaves_no_files(tmp_path):
    # Short: the run directory holds Unix sockets, whose paths may not pass 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="gw-"))
    stack = GatewayStack(tmp_path, quickstart_config(), env={"TMPDIR": str(temp)}).start()
    assert [p.name for p in temp.iterdir()][0].startswith("llmgw-")     # its run directory
    rid = f"test-{uuid.uuid4()}"
    words = " ".join(f"w{i}" for i in range(25))
    received = []

    def stream():
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                          headers={**ALICE, "x-request-id": rid, "x-mock-chunk-delay-ms": "120"},
                          json={"model": "gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": words}]}) as response:
            for chunk in response.iter_raw():
                received.append(chunk)

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(1.0)                                   # mid-stream (about 3 s in all)
    stack.process.send_signal(signal.SIGTERM)
    thread.join(timeout=40)
    stack.process.wait(timeout=40)
    body = b"".join(received)
    assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
    record = next(r for r in stack.log_records() if r.get("client_request_id") == rid)
    assert record["outcome"] == "ok" and record["usage_estimated"] is False
    assert record["output_tokens"] == 25 + 0 or record["output_tokens"] > 0
    # A clean stop leaves no run directory behind (Envoy's config, sockets, metrics files).
    assert list(temp.iterdir()) == []
    temp.rmdir()


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A stack with Kubelet's gRPC probe on TCP (server.health_port), for its test and
    then `extproc drain`'s, the last to use it (drained, it takes no new connection)."""
    from gateway_stack import free_port
    config = quickstart_config()
    config["server"] = {"health_port": free_port()}
    stack = GatewayStack(tmp_path_factory.mktemp("probed"), config).start()
    yield stack
    stack.stop()


def test_grpc_health_on_tcp_and_config_file_disappearing(probed):
    """Kubelet's gRPC probe answers on server.health_port; a config file that disappears
    leaves the config in force (counted), and traffic goes on."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    stack = probed
    port = stack.config["server"]["health_port"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                          timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # The probe port answers Health only, never the ext_proc service itself.
    from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = ep_grpc.ExternalProcessorStub(channel).Process(iter([ep.ProcessingRequest()]), timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            list(stream)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    (stack.workdir / "gateway.yaml").unlink()
    time.sleep(2.5)
    # `extproc up` itself read nothing from the file after start (its banner once did).
    assert stack.process.poll() is None, stack.stderr_path.read_text()[-2000:]
    response = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still here"}]})
    assert response.status_code == 200
    assert 'gateway_config_reloads_total{result="missing"}' in stack.metrics('result="missing"')


def test_extproc_drain_returns_once_envoys_streams_have_ended(probed):
    """Kubernetes' preStop: `extproc drain` stops Envoy's listeners and returns only once
    the stream in flight has finished, so the SIGTERM that follows cuts nothing."""
    stack = probed
    received = []

    def stream():
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=30,
                          headers={**ALICE, "x-mock-chunk-delay-ms": "120"},
                          json={"model": "gpt-4o-mini", "stream": True,
                                "messages": [{"role": "user", "content": " ".join(["w"] * 25)}]}) as response:
            received.extend(response.iter_raw())

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(0.8)                                   # mid-stream (about 3 s in all)
    started = time.monotonic()
    drain = run_extproc(["drain", "--timeout", "30",
                         "--envoy-admin", str(stack.envoy_admin_socket)],
                        capture_output=True, text=True, timeout=60)
    waited = time.monotonic() - started
    thread.join(timeout=30)
    assert drain.returncode == 0, drain.stderr
    assert b"".join(received).rstrip().endswith(b"data: [DONE]")
    assert waited >= 1.5, waited                     # it waited for the stream


def test_bloated_workers_are_replaced_without_failing_a_request(tmp_path):
    """server.worker_max_rss_mb: the supervisor swaps a worker over the limit for a new
    process (a limit of 1 MB means: every check, about every 5 s) while traffic and a
    long stream run. Nothing fails (no stream cancelled by a shutdown race), the old
    workers do exit, and the stream started on an old worker finishes."""
    config = quickstart_config()
    config["server"]["worker_max_rss_mb"] = 1
    config["server"]["worker_connection_age_s"] = 2
    stack = GatewayStack(tmp_path, config, workers=1).start()
    first_worker = stack.worker_pids()[0]
    statuses: list[int] = []
    stop = threading.Event()
    streamed: list[bytes] = []

    def traffic():
        with httpx.Client(headers=ALICE, timeout=10) as client:
            while not stop.is_set():
                statuses.append(client.post(f"{stack.base_url}/chat/completions", json={
                    "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).status_code)

    def long_stream():
        with httpx.stream("POST", f"{stack.base_url}/chat/completions", timeout=60,
                          headers={**ALICE, "x-mock-chunk-delay-ms": "300"},
                          json={"model": "gpt-4o-mini", "stream": True, "messages": [
                              {"role": "user", "content": " ".join(f"w{i}" for i in range(30))}]}) as r:
            streamed.extend(r.iter_raw())

    threads = [threading.Thread(target=traffic) for _ in range(3)] + [threading.Thread(target=long_stream)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 40
        while stack.stderr_path.read_text().count("replacing it") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        # The first replaced worker is told to stop, and exits once its streams are done.
        deadline = time.monotonic() + 30
        while first_worker in (running := stack.worker_pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        # Retired workers flushed their metrics before exiting: not one request lost.
        counted = _requests_counted(stack, expected=len(statuses) + 1)
        # Envoy moved to new connections by itself (the age): a server GOAWAY instead
        # now and then refused a stream Envoy had just opened.
        drained = stack.envoy_admin("/stats", params={"filter": r"^cluster\.extproc\.upstream_cx_max_duration_reached$"}).text
        stack.stop()
    assert counted == len(statuses) + 1
    assert int(drained.split(":")[1]) >= 5, drained       # 2 s age over ~20 s of traffic
    assert stack.stderr_path.read_text().count("replacing it") >= 2
    assert first_worker not in running and running
    assert len(statuses) > 50 and set(statuses) == {200}, sorted(set(statuses))
    assert b"".join(streamed).rstrip().endswith(b"data: [DONE]")


def _requests_counted(stack, expected: int, timeout: float = 5) -> int:
    """Sum of gateway_requests_total, polled until it reaches `expected` (or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        total = int(sum(float(line.rsplit(" ", 1)[1]) for line in stack.metrics().splitlines()
                        if line.startswith("gateway_requests_total{")))
        if total >= expected or time.monotonic() > deadline:
            return total
        time.sleep(0.1)


def _environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.mark.parametrize("operators_value", [None, "-event_engine_listener"])
def test_workers_get_grpcs_two_thread_reads_and_a_heap_kept_for_large_bodies_unless_the_operator_says_otherwise(
        tmp_path, monkeypatch, operators_value):
    from extproc.runtime.worker_env import WORKER_GRPC_EXPERIMENTS, WORKER_MALLOC
    operators_trim = "1048576"
    if operators_value:
        monkeypatch.setenv("GRPC_EXPERIMENTS", operators_value)
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", operators_trim)
    else:
        monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    stack = GatewayStack(tmp_path, quickstart_config()).start()
    try:
        pids = stack.worker_pids()
        assert pids
        for pid in pids:
            environ = _environ(pid)
            assert environ["GRPC_EXPERIMENTS"] == (operators_value or WORKER_GRPC_EXPERIMENTS)
            assert environ["MALLOC_MMAP_THRESHOLD_"] == WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
            assert environ["MALLOC_TRIM_THRESHOLD_"] == (operators_trim if operators_value
                                                         else WORKER_MALLOC["MALLOC_TRIM_THRESHOLD_"])
        response = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30,
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
        assert "Unknown experiment" not in stack.stderr_path.read_text()
    finally:
        stack.stop()


@pytest.mark.parametrize("scheduling,policy", [(None, os.SCHED_OTHER), ("batch", os.SCHED_BATCH)],
                         ids=["default: normal", "batch"])
def test_every_worker_thread_gets_the_configured_scheduling_policy(tmp_path, scheduling, policy):
    config = quickstart_config()
    if scheduling:
        config["server"]["worker_scheduling"] = scheduling
    config["server"]["transport"] = "grpc"       # the transport that starts threads (h2 runs on one)
    stack = GatewayStack(tmp_path, config, workers=2).start()
    try:
        response = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=30,
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200                 # gRPC's threads are all up by now
        for pid in stack.worker_pids():
            threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
            assert len(threads) > 2
            assert {tid: os.sched_getscheduler(tid) for tid in threads} == dict.fromkeys(threads, policy)
        assert "SCHED_BATCH" not in stack.stderr_path.read_text()     # no warning: it was allowed
    finally:
        stack.stop()


def test_a_sandbox_that_refuses_batch_scheduling_gets_a_warning_and_the_default(monkeypatch, caplog):
    """Where seccomp or a policy forbids sched_setscheduler, the worker still starts:
    it says so once and keeps the default policy (the e2e above covers the allowed case)."""
    from extproc.runtime import worker

    def refuse(pid, policy, param):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    before = os.sched_getscheduler(0)
    with caplog.at_level("WARNING", logger="extproc.server"):
        worker.schedule_worker_threads("batch")
    assert os.sched_getscheduler(0) == before
    assert [r.getMessage() for r in caplog.records] == [
        "could not set the SCHED_BATCH policy ([Errno 1] Operation not permitted); running with the default"]
    caplog.clear()
    worker.schedule_worker_threads("normal")          # the default asks for nothing (refuse unused)
    assert caplog.records == []


def test_a_replica_gone_from_its_pool_after_a_reload_leaves_metrics(tmp_path):
    """Each pool replica's gauges are on /metrics while it is in the pool; a reload that
    drops it ends its series (the multiprocess files cannot forget a label set: the
    workers mark it gone and the admin leaves it out); its picks stay counted."""
    import copy
    import re

    stack = ConfigMapStack(tmp_path, quickstart_config(), workers=2).start()
    try:
        endpoints = stack.config["providers"]["local-vllm"]["endpoints"]
        dropped = endpoints[-1]

        def series() -> set[str]:
            text = stack.metrics()
            return set(re.findall(r'gateway_pool_endpoint_waiting\{endpoint="([^"]+)",pool="local-vllm"\}', text))

        deadline = time.monotonic() + 20
        while series() != set(endpoints) and time.monotonic() < deadline:
            httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=10,
                       json={"model": "local-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
            time.sleep(0.2)
        assert series() == set(endpoints)
        changed = copy.deepcopy(stack.config)
        kept = changed["providers"]["local-vllm"]
        kept["endpoints"] = endpoints[:-1]
        kept["adapters"] = {name: [a for a in where if a != dropped] for name, where in kept["adapters"].items()}
        stack.publish(changed, "..v2")
        deadline = time.monotonic() + 20
        while series() != set(endpoints[:-1]) and time.monotonic() < deadline:
            answer = httpx.post(f"{stack.base_url}/chat/completions", headers=ALICE, timeout=10, json={
                "model": "local-llama", "messages": [{"role": "user", "content": "again"}], "max_tokens": 4})
            assert answer.status_code == 200, answer.text
            time.sleep(0.2)
        assert series() == set(endpoints[:-1])
        assert dropped not in re.findall(r'gateway_pool_endpoint_\w+\{endpoint="([^"]+)"', stack.metrics())
    finally:
        stack.stop()
