"""The Kubernetes manifests without a cluster: every manifest validates strictly against the Kubernetes
schemas offline, the generated pieces match their sources, and the pod's parts agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from gateway_stack import ROOT

from extproc.config import envoy_config, kube

K8S = ROOT / "k8s"
RESOURCE_FILES = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"
                        and "monitoring" not in p.parts)


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", RESOURCE_FILES, ids=[str(p.relative_to(K8S)) for p in RESOURCE_FILES])
def test_manifest_validates_strictly(path):
    result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "ERROR" not in result.stdout


def test_servicemonitor_shape():
    # A CRD (Prometheus Operator): no offline schema; check what the operator needs.
    [monitor] = _documents(K8S / "monitoring" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    [service] = [d for d in _documents(K8S / "base" / "service.yaml") if d["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_kustomizations_list_existing_files():
    for kustomization in K8S.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / resource).exists(), (kustomization, resource)


@pytest.mark.parametrize("envoy,args", [
    ("quickstart.yaml", []),
    ("kubernetes.yaml", ["--config", "config/production.yaml", "--target", "kubernetes"]),
], ids=["quickstart", "kubernetes"])
def test_generated_envoy_configs_match_their_sources(envoy, args):
    """envoy/quickstart.yaml and envoy/kubernetes.yaml are `extproc envoy-config`'s output,
    from envoy/template.yaml and their filter configs, byte for byte."""
    made = subprocess.run([sys.executable, "-m", "extproc", "envoy-config", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=True).stdout
    assert (ROOT / "envoy" / envoy).read_text() == made


def test_generated_configmaps_match_their_sources():
    assert (K8S / "base" / "configmaps.yaml").read_text() == kube.configmaps()


def test_pod_parts_agree():
    [deployment] = _documents(K8S / "base" / "deployment.yaml")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    production = yaml.safe_load((ROOT / "config" / "production.yaml").read_text())
    envoy = envoy_config.load(str(ROOT / "envoy" / "kubernetes.yaml"))
    sockets = [e["endpoint"]["address"]["pipe"]["path"] for cluster in envoy["static_resources"]["clusters"]
               if cluster["name"] == "extproc"
               for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert len(sockets) == production["server"]["workers"]
    assert all(s.startswith(production["server"]["socket_dir"] + "/") for s in sockets)
    for name in ("envoy", "extproc"):
        mounts = {m["mountPath"] for m in containers[name]["volumeMounts"]}
        assert production["server"]["socket_dir"] in mounts
    ports = {p["containerPort"] for p in containers["extproc"]["ports"]}
    assert int(production["server"]["admin"].rsplit(":", 1)[1]) in ports
    assert production["server"]["health_port"] in ports
    listener = envoy["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    assert listener in {p["containerPort"] for p in containers["envoy"]["ports"]}
    assert containers["extproc"]["args"][-1] == "/etc/llm-gateway/gateway.yaml"


def test_shipped_configs_pass_check():
    result = subprocess.run([sys.executable, "-m", "extproc", "check", "--config",
                             str(ROOT / "config" / "production.yaml"), "--envoy",
                             str(ROOT / "envoy" / "kubernetes.yaml")], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
