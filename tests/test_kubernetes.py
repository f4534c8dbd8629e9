"""The Kubernetes manifests without a cluster: every kustomization builds with `kubectl kustomize`
(as `kubectl apply -k` would) and its objects validate strictly against the Kubernetes schemas
offline, every kustomization the docs name is one of them, the generated pieces match their
sources, and the pod's parts agree."""

from __future__ import annotations

import re

import pytest
import yaml
from gateway_stack import ROOT
from warm_start import run_extproc
from kube_validation import documents, kustomize, name_of, problems_of

from extproc.config import envoy_config, kube

K8S = ROOT / "k8s"
# Every kustomization (a Component is built only as part of one): the list is the tree itself.
KUSTOMIZATIONS = sorted(p.parent.relative_to(ROOT).as_posix() for p in K8S.rglob("kustomization.yaml")
                        if yaml.safe_load(p.read_text()).get("kind", "Kustomization") == "Kustomization")
COMPONENT = "k8s/components/prometheus-operator"
NAMESPACE = "llm-gateway"


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    """Each kustomization's objects, built once for the module; a failed build fails the tests
    with kustomize's own message."""
    objects = {}
    for directory in KUSTOMIZATIONS:
        result = kustomize(ROOT / directory)
        objects[directory] = (documents(result.stdout) if result.returncode == 0
                              else f"`kubectl kustomize {directory}` failed: {result.stderr.strip()}")
    return objects


def _objects(built, directory) -> list[dict]:
    if isinstance(built[directory], str):
        pytest.fail(built[directory], pytrace=False)
    return built[directory]


def test_the_overlays_are_found():
    assert {"k8s/base", "k8s/overlays/production", "k8s/overlays/production-prometheus-operator"} <= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_kustomization_builds_and_validates_strictly(built, directory):
    objects = _objects(built, directory)
    assert objects, f"{directory} built no object"
    uses_component = COMPONENT in _components_of(directory)
    assert problems_of(objects, allow_crds=uses_component) == []


def _components_of(directory: str) -> set[str]:
    """The components a kustomization pulls in, through its own resources too."""
    base = ROOT / directory
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    found = {(base / c).resolve().relative_to(ROOT).as_posix() for c in kustomization.get("components", [])}
    for resource in kustomization.get("resources", []):
        if (base / resource / "kustomization.yaml").exists():
            found |= _components_of((base / resource).resolve().relative_to(ROOT).as_posix())
    return found


def test_production_overlay_needs_no_crd(built):
    # A plain cluster (no Prometheus Operator) applies it: only built-in kinds.
    objects = _objects(built, "k8s/overlays/production")
    assert not [name_of(o) for o in objects if "coreos.com" in o["apiVersion"]]
    assert problems_of(objects) == []


@pytest.mark.parametrize("directory", ["k8s/overlays/production", "k8s/overlays/production-prometheus-operator"])
def test_production_overlays_set_namespace_and_image(built, directory):
    objects = _objects(built, directory)
    assert {o["metadata"].get("namespace") for o in objects} == {NAMESPACE}
    images = {c["image"] for o in objects if o["kind"] == "Deployment"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert "registry.example.com/platform/llm-gateway:0.1.0" in images and "llm-gateway:0.1.0" not in images


@pytest.mark.parametrize("directory", ["k8s/base", "k8s/overlays/production"])
def test_the_redis_keeps_its_counters_across_restarts(built, directory):
    """A Redis without persistence resets every budget when it restarts: the manifests' Redis
    is a StatefulSet whose append-only file is on a PersistentVolumeClaim."""
    objects = _objects(built, directory)
    [redis] = [o for o in objects if o["metadata"]["name"] == "llm-gateway-redis" and o["kind"] != "Service"
               and o["kind"] != "NetworkPolicy"]
    assert redis["kind"] == "StatefulSet" and redis["spec"]["serviceName"] == "llm-gateway-redis"
    pod = redis["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--dir") + 1] == "/data"
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == mount["name"] and not pod.get("volumes")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pod["terminationGracePeriodSeconds"] >= 30            # time to write the file out on SIGTERM


def test_servicemonitor_scrapes_the_gateway(built):
    # A CRD (Prometheus Operator): no offline schema; check what the operator needs.
    objects = _objects(built, "k8s/overlays/production-prometheus-operator")
    [monitor] = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "llm-gateway"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The rest is the production overlay, object for object.
    rest = [o for o in objects if o["kind"] != "ServiceMonitor"]
    assert rest == _objects(built, "k8s/overlays/production")


# `kubectl [flags] apply -k DIR`, `kubectl kustomize DIR`, `kubectl diff --kustomize=DIR`, ... for a DIR of this repository.
KUSTOMIZE_COMMAND = re.compile(r"kubectl\s+(?:[\w-]+\s+)*?(?:-k|--kustomize|kustomize)[\s=]+(?:\./)?(k8s/[\w./-]*)")


def test_every_kustomization_the_docs_name_builds():
    named = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in KUSTOMIZE_COMMAND.finditer(doc.read_text()):
            named.setdefault(match.group(1).rstrip("/."), doc.relative_to(ROOT).as_posix())
    assert named, "the docs name no kustomization: the pattern no longer finds them"
    unknown = {path: doc for path, doc in named.items() if path not in KUSTOMIZATIONS}
    assert unknown == {}, f"docs name kustomizations that are not in k8s/: {unknown}"


def test_example_secret_validates_strictly():
    objects = documents((K8S / "examples" / "provider-secret.yaml").read_text())
    assert [o["kind"] for o in objects] == ["Secret"]
    assert problems_of(objects) == []


@pytest.mark.parametrize("envoy,args", [
    ("quickstart.yaml", []),
    ("kubernetes.yaml", ["--config", "config/production.yaml", "--target", "kubernetes"]),
], ids=["quickstart", "kubernetes"])
def test_generated_envoy_configs_match_their_sources(envoy, args):
    """envoy/quickstart.yaml and envoy/kubernetes.yaml are `extproc envoy-config`'s output,
    from envoy/template.yaml and their filter configs, byte for byte."""
    made = run_extproc(["envoy-config", *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=60, check=True).stdout
    assert (ROOT / "envoy" / envoy).read_text() == made


def test_generated_configmaps_match_their_sources():
    assert (K8S / "base" / "configmaps.yaml").read_text() == kube.configmaps()


def test_pod_parts_agree(built):
    [deployment] = [o for o in _objects(built, "k8s/base") if name_of(o) == "Deployment/llm-gateway"]
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
    admin = envoy["admin"]["address"]["pipe"]["path"]
    for name in ("envoy", "extproc"):
        drain = containers[name]["lifecycle"]["preStop"]["exec"]["command"]
        assert drain[:2] == ["extproc", "drain"] and drain[drain.index("--envoy-admin") + 1] == admin
    # The MCP aggregator's secret (serve refuses a combined profile without it): one Secret's
    # key in both containers, never a value written into the manifest.
    secrets = [[e["valueFrom"]["secretKeyRef"] for e in containers[name].get("env") or ()
                if e["name"] == "LLMGW_AGGREGATOR_SECRET"] for name in ("envoy", "extproc")]
    assert secrets[0] == secrets[1] and len(secrets[0]) == 1 and secrets[0][0]["key"] == "secret", secrets


def test_shipped_configs_pass_check():
    result = run_extproc(["check", "--config",
                          str(ROOT / "config" / "production.yaml"), "--envoy",
                          str(ROOT / "envoy" / "kubernetes.yaml")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
