"""What a worker's process reads from its environment when it starts (the supervisor
gives it these unless the operator set them): glibc's malloc thresholds and gRPC's
experiments. Imports nothing of the gateway."""

from __future__ import annotations

import os

# grpc-python's EventEngine endpoints hand every read across four threads (epoll poller,
# EventEngine worker, completion-queue thread, event loop); its older iomgr endpoints
# read on the completion-queue thread itself (two). Measured on the gateway (four
# interleaved A/B runs, same core; bench/README.md, "Tried, measured, and not kept"):
# ~5% more requests/s and ~8% less worker CPU per request, ahead in 19 of 26 rounds.
# An operator's own
# GRPC_EXPERIMENTS wins; a grpcio that no longer knows these names logs "Unknown
# experiment" and runs as before.
WORKER_GRPC_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"
# glibc's malloc hands a large freed buffer back to the kernel and maps a new one for the
# next: a request body of megabytes, copied a few times on its way in (socket, HTTP/2
# frames, the gRPC message, protobuf), then page-faults on every copy. Taking buffers
# under 32 MB from the heap, and keeping up to 128 MB of it once freed, cut a do-nothing
# servicer's CPU for a 4 MB body from 6.7-7.2 to 2.3-2.4 ms (bench/floor.py --history-kb
# 4000; docs/kubernetes-and-operations.md, "Scaling"). An operator's own MALLOC_*
# settings win; other C libraries ignore these names.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}


def worker_env() -> dict[str, str]:
    """What a worker's process reads when it starts, besides the supervisor's environment
    (an operator's own values win)."""
    return {**{name: os.environ.get(name, value) for name, value in WORKER_MALLOC.items()},
            "GRPC_EXPERIMENTS": os.environ.get("GRPC_EXPERIMENTS", WORKER_GRPC_EXPERIMENTS)}
