"""What a gateway's processes load at start: each test's stack (and each user's `extproc
up`) starts a mock provider, and it loads only what serving chat calls needs; the demo
MCP server's SDK, NumPy (embeddings) and botocore (Bedrock signatures) wait for their
first request, which is then served as before."""

import subprocess
import sys
import textwrap
import time

import httpx
import yaml

from gateway_stack import free_port

WATCH = textwrap.dedent("""
    import socket, sys, threading, time
    from extproc.cli import main

    def report():
        for port in map(int, sys.argv[2:]):
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                time.sleep(0.05)
        heavy = ("mcp", "numpy", "botocore", "extproc.config.filter_config", "extproc.config.envoy_gen")
        print("loaded:", ",".join(m for m in heavy if m in sys.modules), flush=True)

    threading.Thread(target=report, daemon=True).start()
    main(["mock-provider", "--config", sys.argv[1]])
""")


def test_the_mock_loads_the_mcp_sdk_and_numpy_only_when_asked(tmp_path):
    mock_port, mcp_port = free_port(), free_port()
    config = tmp_path / "mock.yaml"
    config.write_text(yaml.safe_dump({"mock_provider": {
        "listeners": [{"name": "mock", "port": mock_port, "api_key": "k"}],
        "mcp_listeners": [{"name": "mcp-demo", "port": mcp_port, "token": "t0ken"}]}}))
    mock = subprocess.Popen([sys.executable, "-c", WATCH, str(config), str(mock_port), str(mcp_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = mock.stdout.readline()
        assert line.strip() == "loaded:", (line, mock.stderr.read() if mock.poll() is not None else "")
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
        headers = {"accept": "application/json, text/event-stream", "authorization": "Bearer t0ken"}
        refused = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", json=initialize, timeout=30,
                             headers={**headers, "authorization": "Bearer wrong"})
        assert refused.status_code == 401
        deadline = time.monotonic() + 60
        answer = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp", json=initialize, headers=headers, timeout=60)
        assert time.monotonic() < deadline
        assert answer.status_code == 200, answer.text
        assert "gateway-demo-tools" in answer.text
        embedded = httpx.post(f"http://127.0.0.1:{mock_port}/v1/embeddings", timeout=60,
                              headers={"authorization": "Bearer k"},
                              json={"model": "text-embedding-3-small", "input": ["hello"]})
        assert embedded.status_code == 200, embedded.text
        assert len(embedded.json()["data"][0]["embedding"]) == 1536
    finally:
        mock.terminate()
        mock.wait(timeout=30)


AGGREGATOR_WATCH = WATCH.replace('main(["mock-provider", "--config", sys.argv[1]])',
                                 'main(["mcp-aggregator", "--config", sys.argv[1]])').replace(
    '"numpy", "botocore", ', "")


def test_the_mcp_aggregator_listens_without_the_mcp_sdk_and_loads_it_for_envoys_first_call(tmp_path):
    from gateway_stack import quickstart_config
    from extproc.config.envoy_mcp import AGGREGATOR_SECRET_ENV, AGGREGATOR_SECRET_HEADER
    from extproc.credentials.google import DEMO_SERVICE_ACCOUNT_ENV, demo_service_account
    port, secret = free_port(), "s" * 48
    config = quickstart_config()
    config["mcp"]["aggregator"] = {"address": f"127.0.0.1:{port}", "upstream_address": f"127.0.0.1:{free_port()}"}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**__import__("os").environ, AGGREGATOR_SECRET_ENV: secret,
           DEMO_SERVICE_ACCOUNT_ENV: demo_service_account()}
    aggregator = subprocess.Popen([sys.executable, "-c", AGGREGATOR_WATCH, str(path), str(port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = aggregator.stdout.readline()
        assert line.strip().startswith("loaded:") and "mcp" not in line.split(":", 1)[1].split(","), \
            (line, aggregator.stderr.read() if aggregator.poll() is not None else "")
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
        headers = {"accept": "application/json, text/event-stream"}
        url = f"http://127.0.0.1:{port}/mcp/workspace"
        assert httpx.post(url, json=initialize, headers=headers, timeout=60).status_code == 403
        # Envoy's first call loads the SDK, which answers it (here: a call outside any
        # session; an initialize needs the servers behind Envoy's loopback listener).
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        answer = httpx.post(url, json=listing, headers={**headers, AGGREGATOR_SECRET_HEADER: secret}, timeout=60)
        assert answer.status_code == 400 and "session" in answer.text.lower(), answer.text
        unknown = httpx.post(f"http://127.0.0.1:{port}/mcp/nowhere", json=listing, timeout=60,
                             headers={**headers, AGGREGATOR_SECRET_HEADER: secret})
        assert unknown.status_code == 404 and "No such profile" in unknown.text
        # Every server of the profile unreachable (nothing listens on its upstream): a
        # session still opens, lists no tools and answers a call with an error result.
        envoys = {**headers, AGGREGATOR_SECRET_HEADER: secret}
        opened = httpx.post(url, json=initialize, headers=envoys, timeout=60)
        assert opened.status_code == 200 and opened.json()["result"]["serverInfo"], opened.text
        envoys["mcp-session-id"] = opened.headers["mcp-session-id"]
        httpx.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=envoys, timeout=60)
        listed = httpx.post(url, json=listing, headers=envoys, timeout=60)
        assert listed.status_code == 200 and listed.json()["result"]["tools"] == [], listed.text
        called = httpx.post(url, headers=envoys, timeout=60, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "demo__echo", "arguments": {}}})
        assert called.status_code == 200 and called.json()["result"]["isError"] is True, called.text
        assert "unreachable" in called.json()["result"]["content"][0]["text"]
    finally:
        aggregator.terminate()
        assert aggregator.wait(timeout=30) is not None
