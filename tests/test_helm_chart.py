"""The Helm chart charts/llm-gateway without a cluster: rendered by Helm's own engine (the
helm-python-sdk package binds Helm's Go SDK, as `helm template` runs it) with its default values
and with ci/all-features-values.yaml (every optional feature on), linted, every object validated
strictly against the Kubernetes schemas, and the filter config it makes passes `extproc check`
beside the Envoy config its init container makes from it."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from gateway_stack import ROOT
from warm_start import run_extproc
from kube_validation import documents, name_of, problems_of

from extproc.config import envoy_config

try:
    import helm_python
except ImportError:                # a clear failure, not a silent skip: the test extras have it
    helm_python = None

CHART = ROOT / "charts" / "llm-gateway"
# Every optional object off: one replica on SQLite, no HPA, PDB, NetworkPolicy or ServiceAccount.
ALL_OFF = {"replicaCount": 1, "redis": {"bundled": False}, "autoscaling": {"enabled": False},
           "podDisruptionBudget": {"enabled": False}, "networkPolicy": {"enabled": False},
           "serviceAccount": {"create": False}, "rolloutOnConfigChange": False,
           "providers": {"ollama": {"url": "http://ollama.models.svc:11434", "api_key": {"value": "unused"}}},
           "models": {"llama3": {"backends": [{"provider": "ollama"}], "price": {"input": 0, "output": 0}},
                      "gpt-4o-mini": None, "text-embedding-3-small": None}}
VALUES = {"defaults": None,
          "all-features": yaml.safe_load((CHART / "ci" / "all-features-values.yaml").read_text()),
          "all-off": ALL_OFF}
RELEASE, NAMESPACE = "gw", "llm-gateway"


def _helm():
    if helm_python is None:
        pytest.fail("the Python package helm-python-sdk (Helm's engine, in the test extras: "
                    "pip install -e '.[test]') is not installed: the chart cannot be rendered",
                    pytrace=False)
    return helm_python


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """Per values set: the objects, the files Helm rendered, and the filter config with the Envoy
    config the init container makes from it (each made once for the module)."""
    helm = _helm()
    made = {}
    with helm.Chart.load(str(CHART)) as chart:
        for label, values in VALUES.items():
            files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            objects = [o for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))
                       for o in documents(text)]
            made[label] = {"files": files, "objects": objects, "values": chart.merge_values(values)}
    for label, entry in made.items():
        folder = tmp_path_factory.mktemp(label)
        [configmap] = [o for o in entry["objects"] if o["kind"] == "ConfigMap"]
        config = folder / "gateway.yaml"
        config.write_text(configmap["data"]["gateway.yaml"])
        result = run_extproc(["envoy-config", "--config", str(config),
                              "--target", "kubernetes"], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 0, f"{label}: extproc envoy-config: {result.stderr}"
        envoy = folder / "envoy.yaml"
        envoy.write_text(result.stdout)
        entry.update(config=config, envoy=envoy)
    return made


def _one(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


@pytest.mark.parametrize("label", VALUES)
def test_chart_lints_clean(label):
    report = _helm().lint(str(CHART), VALUES[label], strict=True, namespace=NAMESPACE)
    # Severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors.
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("label", VALUES)
def test_chart_objects_validate_strictly(rendered, label):
    objects = rendered[label]["objects"]
    assert problems_of(objects, allow_crds=label == "all-features") == []
    assert {o["metadata"].get("namespace", NAMESPACE) for o in objects} == {NAMESPACE}


def test_defaults_apply_on_any_cluster(rendered):
    kinds = sorted(name_of(o) for o in rendered["defaults"]["objects"])
    assert kinds == sorted([
        "ConfigMap/gw-llm-gateway-config", "Deployment/gw-llm-gateway", "StatefulSet/gw-llm-gateway-redis",
        "HorizontalPodAutoscaler/gw-llm-gateway", "NetworkPolicy/gw-llm-gateway", "NetworkPolicy/gw-llm-gateway-redis",
        "PodDisruptionBudget/gw-llm-gateway", "Service/gw-llm-gateway", "Service/gw-llm-gateway-redis",
        "ServiceAccount/gw-llm-gateway"])           # no CRD kind (ServiceMonitor) unless asked for


def test_all_features_render_their_objects(rendered):
    objects = rendered["all-features"]["objects"]
    service = _one(objects, "Service", "gw-llm-gateway")
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not [o for o in objects if "redis" in o["metadata"]["name"]]       # a Redis of one's own
    policy = _one(objects, "NetworkPolicy")
    assert {"port": 6380, "protocol": "TCP"} in [p for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert _one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert _one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


@pytest.mark.parametrize("label", VALUES)
def test_filter_config_passes_check_beside_its_envoy_config(rendered, label):
    entry = rendered[label]
    result = run_extproc(["check", "--config", str(entry["config"]),
                          "--envoy", str(entry["envoy"])], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(entry["config"].read_text())
    values = entry["values"]
    assert set(config["providers"]) == {n for n, p in values["providers"].items() if p is not None}
    assert set(config["models"]) == {n for n, m in values["models"].items() if m is not None}
    if values["redis"]["bundled"] or values["redis"]["url"]:
        assert config["store"]["kind"] == "redis"
        assert config["store"]["url"] == (values["redis"]["url"] or "redis://gw-llm-gateway-redis:6379/0")
    else:
        assert "store" not in config                         # SQLite in the pod's state dir


@pytest.mark.parametrize("label", VALUES)
def test_pod_parts_agree(rendered, label):
    entry = rendered[label]
    deployment = _one(entry["objects"], "Deployment", "gw-llm-gateway")
    pod = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    [init] = pod["initContainers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {name: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
              for name, c in [*containers.items(), ("init", init)]}
    config = yaml.safe_load(entry["config"].read_text())
    envoy = envoy_config.load(str(entry["envoy"]))

    # The init container writes Envoy's config, from the mounted filter config, where Envoy reads it.
    command = shlex.split(init["command"][-1])
    assert command[:2] == ["extproc", "envoy-config"] and command[command.index("--target") + 1] == "kubernetes"
    assert mounts["init"]["/etc/llm-gateway"] == mounts["extproc"]["/etc/llm-gateway"] == "gateway-config"
    assert command[command.index("--config") + 1] == containers["extproc"]["args"][-1] == "/etc/llm-gateway/gateway.yaml"
    assert command[-2:] == [">", "/etc/envoy/envoy.yaml"]
    assert containers["envoy"]["command"][:3] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert mounts["init"]["/etc/envoy"] == mounts["envoy"]["/etc/envoy"] == "envoy-config"
    assert "emptyDir" in volumes["envoy-config"]

    # Envoy reaches every worker's socket in the directory both containers share.
    sockets = [e["endpoint"]["address"]["pipe"]["path"] for cluster in envoy["static_resources"]["clusters"]
               if cluster["name"] == "extproc" for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert len(sockets) == config["server"]["workers"] == entry["values"]["config"]["server"]["workers"] >= 2
    socket_dir = config["server"]["socket_dir"]
    assert all(s.startswith(socket_dir + "/") for s in sockets)
    assert mounts["envoy"][socket_dir] == mounts["extproc"][socket_dir] == "sockets"
    listener = envoy["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    assert listener in {p["containerPort"] for p in containers["envoy"]["ports"]}
    # Both preStop drains talk to Envoy's admin socket, in the shared directory.
    admin = envoy["admin"]["address"]["pipe"]["path"]
    assert admin.startswith(socket_dir + "/")
    for name in ("envoy", "extproc"):
        drain = containers[name]["lifecycle"]["preStop"]["exec"]["command"]
        assert drain[:2] == ["extproc", "drain"] and drain[drain.index("--envoy-admin") + 1] == admin
    extproc_ports = {p["containerPort"] for p in containers["extproc"]["ports"]}
    assert {int(config["server"]["admin"].rsplit(":", 1)[1]), config["server"]["health_port"]} <= extproc_ports
    # The MCP aggregator's secret: the same Secret's key in both containers, never a value.
    secrets = [[e["valueFrom"]["secretKeyRef"] for e in containers[name].get("env") or ()
                if e["name"] == "LLMGW_AGGREGATOR_SECRET"] for name in ("envoy", "extproc")]
    assert secrets[0] == secrets[1] and len(secrets[0]) == 1 and secrets[0][0]["key"] == "secret", secrets

    # Each provider key the config reads from a file is a Secret key projected to that file.
    projected = {}
    if "provider-keys" in volumes:
        mount = next(path for path, name in mounts["extproc"].items() if name == "provider-keys")
        projected = {f"{mount}/{item['path']}": (source["secret"]["name"], item["key"])
                     for source in volumes["provider-keys"]["projected"]["sources"] for item in source["secret"]["items"]}
    wanted = {p["api_key"]["file"]: (v["apiKeySecret"]["name"], v["apiKeySecret"]["key"])
              for n, p in config["providers"].items() if "file" in p.get("api_key", {})
              for v in [entry["values"]["providers"][n]]}
    assert wanted and projected == wanted


def test_config_change_rolls_the_pods(rendered):
    templates = {label: _one(rendered[label]["objects"], "Deployment", "gw-llm-gateway")["spec"]["template"]
                 for label in VALUES}
    checksums = [templates[label]["metadata"]["annotations"]["checksum/config"] for label in ("defaults", "all-features")]
    assert len(set(checksums)) == 2
    assert "annotations" not in templates["all-off"]["metadata"]         # rolloutOnConfigChange: false


def test_all_off_renders_only_the_pod(rendered):
    objects = rendered["all-off"]["objects"]
    assert sorted(name_of(o) for o in objects) == [
        "ConfigMap/gw-llm-gateway-config", "Deployment/gw-llm-gateway", "Service/gw-llm-gateway"]
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def _redis_persists(redis: dict) -> bool:
    """The Redis's append-only file lives on a PersistentVolumeClaim of its StatefulSet."""
    pod = redis["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    claims = {c["metadata"]["name"]: c for c in redis["spec"].get("volumeClaimTemplates", [])}
    return (args[args.index("--appendonly") + 1] == "yes" and args[args.index("--dir") + 1] == "/data"
            and mount["name"] in claims and mount["name"] not in {v["name"] for v in pod.get("volumes", [])})


def test_the_bundled_redis_keeps_its_counters_across_restarts(rendered):
    """A Redis restart must not reset every budget: its append-only file on a volume claim."""
    redis = _one(rendered["defaults"]["objects"], "StatefulSet", "gw-llm-gateway-redis")
    assert _redis_persists(redis)
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]                       # the cluster's default
    assert redis["spec"]["serviceName"] == "gw-llm-gateway-redis"
    assert "WARNING" not in rendered["defaults"]["files"]["llm-gateway/templates/NOTES.txt"]


def test_an_ephemeral_bundled_redis_is_a_choice_the_notes_warn_of():
    values = {"redis": {"persistence": {"enabled": False}}}
    with _helm().Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = [o for path, text in sorted(files.items()) if path.endswith(".yaml") for o in documents(text)]
    assert problems_of(objects) == []
    redis = _one(objects, "StatefulSet", "gw-llm-gateway-redis")
    assert not _redis_persists(redis) and "volumeClaimTemplates" not in redis["spec"]
    assert {"name": "data", "emptyDir": {}} in redis["spec"]["template"]["spec"]["volumes"]
    assert "resets every budget" in files["llm-gateway/templates/NOTES.txt"]
    with _helm().Chart.load(str(CHART)) as chart:
        files = chart.render({"redis": {"persistence": {"storageClass": "fast-ssd", "size": "5Gi"}}},
                             name=RELEASE, namespace=NAMESPACE, is_install=True)
    redis = _one([o for path, t in files.items() if path.endswith(".yaml") for o in documents(t)],
                 "StatefulSet", "gw-llm-gateway-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_install_notes_name_the_urls(rendered):
    notes = rendered["defaults"]["files"]["llm-gateway/templates/NOTES.txt"]
    assert f"http://gw-llm-gateway.{NAMESPACE}.svc/v1" in notes


@pytest.mark.parametrize("values,refusal", [
    ({"providers": {"mistral": {"url": "https://api.mistral.ai", "apiKeySecret": {"name": "llm-gateway-providers"}}}},
     "missing property 'key'"),
    ({"keys": [{"id": "a", "key": "sk-plain", "key_sha256": "0" * 64}]}, "/keys/0"),
    ({"redis": {"failMode": "sometimes"}}, "/redis/failMode"),
    ({"redis": {"persistence": {"enabled": True, "size": "lots"}}}, "/redis/persistence/size"),
], ids=["secret-ref-without-key", "plain-key", "fail-mode", "persistence-size"])
def test_values_schema_refuses_bad_values(values, refusal):
    """values.schema.json: `helm install` stops on these before anything reaches the cluster."""
    with _helm().Chart.load(str(CHART)) as chart:
        with pytest.raises(helm_python.errors.HelmValuesError, match=re.escape(refusal)):
            chart.render(values, name=RELEASE, namespace=NAMESPACE)


# A helm command with its arguments (prose that names `helm upgrade` alone is not one).
HELM_COMMAND = re.compile(r"helm\s+(?:install|upgrade|template|lint)(?:\s+[^\s`]+)+")


def test_docs_helm_commands_name_the_chart_and_files_that_exist():
    commands = [m.group(0) for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
                for m in HELM_COMMAND.finditer(doc.read_text())]
    assert any(" install " in c for c in commands), "the docs show no `helm install`"
    for command in commands:
        words = command.replace("\\", " ").split()
        files = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-f", "--values")]
        charts = [w for w in words if w.startswith(("charts/", "./charts/")) and w not in files]
        assert charts and all((ROOT / c / "Chart.yaml").is_file() for c in charts), command
        assert all(not f.startswith("charts/") or (ROOT / f).is_file() for f in files), command
