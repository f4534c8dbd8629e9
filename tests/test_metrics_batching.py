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


FAST_CHILDREN = textwrap.dedent("""
    import math, random
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from extproc.observability import metrics

    registry = CollectorRegistry()
    ours = Histogram("ours", "", ["l"], buckets=(0.001, 0.01, 0.1, 1, 10), registry=registry)
    theirs = Histogram("theirs", "", ["l"], buckets=(0.001, 0.01, 0.1, 1, 10), registry=registry)
    counted, reference = (Counter(name, "", ["l"], registry=registry) for name in ("counted", "reference"))
    rng = random.Random(3)
    amounts = [0.0, 0.001, 0.01, 0.1, 1, 10, 10.5, -1.0, math.inf, math.nan, 0.0099999, 0.0100001]
    amounts += [rng.choice([rng.random() * 20, 10 ** rng.uniform(-5, 2)]) for _ in range(2000)]
    for amount in amounts:
        metrics.child(ours, "x").observe(amount)
        theirs.labels("x").observe(amount)
        if amount >= 0 and amount == amount:
            metrics.child(counted, "x").inc(amount)
            reference.labels("x").inc(amount)
    try:
        metrics.child(counted, "x").inc(-1)
        raise SystemExit("a counter took a negative amount")
    except ValueError:
        pass
    text = generate_latest(registry).decode()
    lines = lambda name: sorted(l.replace(name, "") for l in text.splitlines()
                                if l.startswith(name) and "_created" not in l)
    assert lines("ours") == lines("theirs") and len(lines("ours")) == 8, (lines("ours"), lines("theirs"))
    assert lines("counted") == lines("reference") and lines("counted"), text
    print("ok")
""")


def test_the_fast_children_count_as_prometheus_clients_own_do():
    """metrics.child's counters and histograms skip prometheus-client's checks and find a
    bucket by bisection: each bucket, sum and count must come out as its own update makes
    them, at the bounds, past them, and for NaN and infinities."""
    result = subprocess.run([sys.executable, "-c", FAST_CHILDREN], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


BATCHED_HISTOGRAMS = textwrap.dedent("""
    import math, random
    from prometheus_client import CollectorRegistry, Histogram, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from extproc.observability import metrics

    local = CollectorRegistry()
    theirs = Histogram("theirs", "", ["l"], buckets=(0.001, 0.01, 0.1, 1, 10), registry=local)
    ours = Histogram("ours", "", ["l"], buckets=(0.001, 0.01, 0.1, 1, 10))
    metrics.batch_writes()
    rng = random.Random(5)
    edges = [0.0, 0.001, 0.01, 0.1, 1, 10, 10.5, -1.0, math.inf, -math.inf, math.nan, 0.0099999, 3]
    # The order of a sum first (a NaN or an infinity, once added, is the sum from then on).
    batches = [[0.25, 0.0005], [1e16, 0.75, -1e16], [0.1] * 7]
    batches += [[rng.choice(edges + [rng.random() * 20, 10 ** rng.uniform(-5, 2)]) for _ in range(rng.randrange(1, 40))]
                for _ in range(60)] + [[0.0005, math.nan], [0.0005], [math.inf, -math.inf, 0.0001]]
    for batch in batches:
        for amount in batch:
            metrics.child(ours, "x").observe(amount)
            theirs.labels("x").observe(amount)
        metrics.flush()
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        lines = lambda text, name: sorted(l.replace(name, "") for l in text.splitlines()
                                          if l.startswith(name + "_") and "_created" not in l)
        ours_now = lines(generate_latest(shared).decode(), "ours")
        theirs_now = lines(generate_latest(local).decode(), "theirs")
        assert ours_now == theirs_now and len(ours_now) == 8, (batch, ours_now, theirs_now)
    print("ok")
""")


def test_batched_histograms_come_out_at_flush_as_prometheus_clients_own_updates(tmp_path):
    """A worker's histogram observations reach the shared files at flush(): after each
    flush every bucket, sum and count is what prometheus-client's own observe() makes of
    the same amounts, in the same order, for NaN, the infinities and the bounds too."""
    result = subprocess.run([sys.executable, "-c", BATCHED_HISTOGRAMS], capture_output=True, text=True,
                            timeout=60, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
