"""A pool over a Kubernetes Service: its replicas are the ready addresses of the Service's
EndpointSlices (discovery.k8s.io/v1), listed then watched through the API server with the
pod's service-account token, so a replica added, drained or replaced changes the picker's
list within the watch's latency and no call ever asks the API. A lost watch lists again
after a short wait; until the first list the picker lets Envoy balance (reason unscraped).
RBAC: get, list, watch on endpointslices (k8s/base, charts/llm-gateway)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl

from .signals import PoolSignals

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
RETRY_S = 2.0
log = logging.getLogger(__name__)


def ready_addresses(slices: dict[str, dict], port: int) -> list[str]:
    """"ip:port" of every ready endpoint of the slices (by slice name)."""
    found = []
    for item in slices.values():
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found += [f"{address}:{port}" for address in endpoint.get("addresses") or []]
    return sorted(set(found))


def apply_event(slices: dict[str, dict], event: dict) -> bool | None:
    """A watch event applied to the slices (by name): True if they changed, False for an
    event that changes none (a BOOKMARK), None for an ERROR (the watch must list again)."""
    if not isinstance(event, dict) or not isinstance(event.get("object", {}), dict):
        return None                                    # not what a watch sends: list again
    kind, item = event.get("type"), event.get("object") or {}
    metadata = item.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
    if kind in ("ADDED", "MODIFIED"):
        slices[name] = item
        return True
    if kind == "DELETED":
        slices.pop(name, None)
        return True
    return None if kind == "ERROR" else False


def watch_service(signals: PoolSignals) -> None:
    try:
        asyncio.get_event_loop().create_task(_watch_forever(signals))
    except RuntimeError:
        pass


async def _watch_forever(signals: PoolSignals) -> None:
    import aiohttp
    service = signals.pool.service
    assert service is not None
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    url = (f"https://{host}:{port}/apis/discovery.k8s.io/v1/namespaces/{service.namespace}/endpointslices"
           f"?labelSelector=kubernetes.io%2Fservice-name%3D{service.name}")
    while not signals.stopped:
        try:
            with open(f"{ACCOUNT}/token", encoding="utf-8") as handle:
                token = handle.read().strip()              # re-read: projected tokens rotate
            context = ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt")
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.get(url, ssl=context, timeout=aiohttp.ClientTimeout(total=10)) as answer:
                    answer.raise_for_status()
                    listed = await answer.json()
                slices = {item["metadata"]["name"]: item for item in listed.get("items") or []}
                signals.set_addresses(ready_addresses(slices, service.port))
                version = listed["metadata"]["resourceVersion"]
                watch = f"{url}&watch=1&allowWatchBookmarks=true&resourceVersion={version}"
                async with session.get(watch, ssl=context, timeout=aiohttp.ClientTimeout(total=None,
                                                                                         sock_read=300)) as stream:
                    stream.raise_for_status()
                    async for line in stream.content:
                        changed = apply_event(slices, json.loads(line))
                        if changed is None:
                            break                          # an ERROR (e.g. 410 Gone): list again
                        if changed:
                            signals.set_addresses(ready_addresses(slices, service.port))
        except asyncio.CancelledError:
            raise
        except Exception as error:                         # never the worker's end: list again
            log.warning("pool %s: watching EndpointSlices of %s/%s: %s", signals.name, service.namespace,
                        service.name, type(error).__name__)
        await asyncio.sleep(RETRY_S)
