"""Real Envoy's request-body messages take the path that copies the body once
(pipeline/request_bodies.py): the layout it relies on (`request_body` first, `body` first
in it) is Envoy's own. Envoy runs the shipped quickstart config, its ext_proc cluster on
a servicer served as the workers serve Process (transport/grpc_h2.py, the same Method),
which answers each request body at once with what it received and by which path."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path

import httpx
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from gateway_stack import envoy_running, free_port

from extproc.config.envoy_mcp import AGGREGATOR_SECRET_ENV
from extproc.pipeline import request_bodies
from extproc.pipeline.protocol import read_message
from extproc.pipeline.request_bodies import TAKEN_FROM, parse_request
from extproc.wire.reading import read_request
from extproc.runtime.worker import PROCESS_PATH
from extproc.transport.grpc_h2 import MESSAGES, GrpcServer, Method
from extproc.yamltree import safe_load

ROOT = Path(__file__).resolve().parent.parent


READ_WHOLE = [0]          # messages request_bodies.py read whole
TAKEN = [False]           # whether the last message's body was taken from its pieces
LEFT_TO_PROTOBUF: list[bytes] = []      # Envoy's messages wire/reading.py did not read


def _read_whole(pieces):
    READ_WHOLE[0] += 1
    return read_message(b"".join(pieces))


def from_bytes(data: bytes):
    TAKEN[0] = False
    if read_request(data) is None:
        LEFT_TO_PROTOBUF.append(data)
    return read_message(data)


def from_pieces(pieces: list):
    if read_request(b"".join(pieces)) is None:
        LEFT_TO_PROTOBUF.append(b"".join(pieces))
    whole_before = READ_WHOLE[0]
    request = parse_request(pieces)
    TAKEN[0] = READ_WHOLE[0] == whole_before
    return request


class Answers:
    """Each phase's empty reply; the request body answered at once: its digest and path."""

    def __init__(self, call) -> None:
        pass

    def hand_over(self) -> bool:
        return True

    def message(self, request):
        taken, body, phase = TAKEN[0], request.body, request.phase
        response = ep.ProcessingResponse()
        if phase != "request_body":
            getattr(response, phase).SetInParent()
            return response
        answer = response.immediate_response
        answer.status.code = 200
        answer.body = json.dumps({"taken": taken, "sha256": hashlib.sha256(body).hexdigest(),
                                  "end_of_stream": request.end_of_stream}).encode()
        return response

    def closed(self) -> None:
        pass


@pytest.fixture(scope="module")
def envoy_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bodies")
    socket = str(workdir / "extproc.sock")
    loop = asyncio.new_event_loop()
    patch = pytest.MonkeyPatch()
    patch.setattr(request_bodies, "_whole", _read_whole)
    server = GrpcServer({PROCESS_PATH: Method(Answers, from_bytes, MESSAGES,
                                              pieces_from=TAKEN_FROM, deserialize_pieces=from_pieces)})
    loop.run_until_complete(server.start(socket))
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    config = safe_load((ROOT / "envoy" / "quickstart.yaml").read_text())
    port = free_port()
    config["admin"]["address"]["pipe"]["path"] = str(workdir / "admin.sock")
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = port
    listener["filter_chains"][0]["filters"][0]["typed_config"].pop("access_log", None)
    for cluster in config["static_resources"]["clusters"]:
        for group in cluster.get("load_assignment", {}).get("endpoints", []):
            for endpoint in group["lb_endpoints"]:
                if "pipe" in endpoint["endpoint"]["address"]:
                    endpoint["endpoint"]["address"]["pipe"]["path"] = socket
    path = workdir / "envoy.json"
    path.write_text(json.dumps(config))
    try:
        with envoy_running(path, port, {AGGREGATOR_SECRET_ENV: "bodies-test"}):
            yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        serving.join(5)
        loop.close()
        patch.undo()


@pytest.mark.parametrize("kilobytes", [2, 150, 1500])
def test_envoys_request_body_arrives_whole_and_a_large_one_is_copied_once(envoy_url, kilobytes):
    prose = "an agent's history of turns, " * (kilobytes * 1024 // 30)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prose}]}).encode()
    answer = httpx.post(envoy_url, content=body, timeout=30,
                        headers={"authorization": "Bearer sk-demo-alice", "content-type": "application/json"})
    assert answer.status_code == 200, answer.text[:300]
    seen = answer.json()
    assert seen["sha256"] == hashlib.sha256(body).hexdigest() and seen["end_of_stream"]
    assert seen["taken"] == (len(body) >= TAKEN_FROM)
    # Envoy 1.40's own messages (the quickstart's attributes, metadata, protocol config)
    # are read without protobuf: its layout is the one wire/reading.py reads.
    assert not LEFT_TO_PROTOBUF, LEFT_TO_PROTOBUF[0][:200]
