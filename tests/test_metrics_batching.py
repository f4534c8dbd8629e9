"""Workers batch metric updates in memory and write them to the multiprocess files at
flush(): what the admin port aggregates must be exact after a flush, and unchanged before.
Runs in a subprocess: prometheus-client picks its value class when extproc.metrics loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from extproc.observability import metrics

    def scraped():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry).decode()

    line = 'gateway_requests_total{backend="b",model="m",status="200",team="t"}'
    metrics.child(metrics.requests, "m", "b", "t", "200").inc()          # written at once
    assert line + " 1.0" in scraped(), scraped()
    metrics.batch_writes()
    for _ in range(41):
        metrics.child(metrics.requests, "m", "b", "t", "200").inc()
    metrics.child(metrics.request_duration, "m", "b", "200").observe(0.3)
    count = 'gen_ai_server_request_duration_seconds_count{backend="b",gen_ai_request_model="m",status="200"}'
    before = scraped()
    assert line + " 1.0" in before and count + " 0.0" in before, before
    metrics.flush()
    after = scraped()
    assert line + " 42.0" in after, after
    assert count + " 1.0" in after, after
    assert metrics.child(metrics.requests, "m", "b", "t", "200") is metrics.child(metrics.requests, "m", "b", "t", "200")
    print("ok")
""")


def test_batched_updates_reach_the_shared_files_at_flush(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                            env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
