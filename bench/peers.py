"""The peers for `bench/run.py --peers`: LiteLLM's proxy (PyPI) and Portkey's gateway
(npm), installed into a folder under the system's temp directory (kept between runs),
each pointed at the same mock provider with its own minimal config.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PEERS_DIR = Path(tempfile.gettempdir()) / "llmgw-bench-peers"
LITELLM_KEY = "sk-bench-master-key-0123456789abcdef"     # the proxy refuses to start without one


@dataclass
class Peer:
    name: str
    process: subprocess.Popen
    url: str                                          # .../v1/chat/completions
    key: str
    headers: dict[str, str] = field(default_factory=dict)


def _run(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")


def _wait(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the peer exited ({process.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"{url} did not answer in {seconds:.0f} s")


def start_litellm(mock_port: int, port: int) -> Peer:
    venv = PEERS_DIR / "litellm"
    if not (venv / "bin" / "litellm").exists():
        _run([sys.executable, "-m", "venv", str(venv)], PEERS_DIR)
        _run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], PEERS_DIR)
    config = PEERS_DIR / "litellm.yaml"
    config.write_text(
        "model_list:\n- model_name: gpt-4o-mini\n  litellm_params:\n"
        f"    model: openai/gpt-4o-mini\n    api_base: http://127.0.0.1:{mock_port}/v1\n"
        f"    api_key: mock-provider-key\ngeneral_settings:\n  master_key: {LITELLM_KEY}\n")
    process = subprocess.Popen([str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port),
                                "--num_workers", "1"], cwd=PEERS_DIR,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/health/liveliness", process)
    return Peer("litellm", process, f"http://127.0.0.1:{port}/v1/chat/completions", LITELLM_KEY)


def start_portkey(mock_port: int, port: int) -> Peer:
    folder = PEERS_DIR / "portkey"
    server = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not server.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _run(["npm", "install", "--no-audit", "--no-fund", "@portkey-ai/gateway"], folder)
    process = subprocess.Popen(["node", str(server), f"--port={port}", "--headless"], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(f"http://127.0.0.1:{port}/", process)
    # Portkey is told the provider and where it is per request, as its docs show.
    return Peer("portkey", process, f"http://127.0.0.1:{port}/v1/chat/completions", "mock-provider-key",
                {"x-portkey-provider": "openai", "x-portkey-custom-host": f"http://127.0.0.1:{mock_port}/v1"})


def start_peers(mock_port: int, ports: tuple[int, int]) -> list[Peer]:
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    litellm = start_litellm(mock_port, ports[0])
    try:
        return [litellm, start_portkey(mock_port, ports[1])]
    except BaseException:
        litellm.process.terminate()
        raise
