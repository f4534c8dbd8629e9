"""Checks rendered Kubernetes objects (kustomize builds, the Helm chart) strictly against the
Kubernetes schemas that kubernetes-validate ships, offline: an unknown field is an error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, latest_version

# The oldest cluster the manifests are for (the kubectl of CI's image) and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.32.0", latest_version())

# Kinds that come from CRDs (no schema in kubernetes-validate): only the optional component has them.
CRD_GROUPS = ("monitoring.coreos.com/",)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def problems_of(objects: list[dict], allow_crds: bool = False) -> list[str]:
    """One line per object that fails strict validation on any of KUBERNETES_VERSIONS."""
    problems = []
    for obj in objects:
        if allow_crds and str(obj.get("apiVersion", "")).startswith(CRD_GROUPS):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except ValidationError as error:
                where = ".".join(str(p) for p in error.path)
                problems.append(f"{name_of(obj)} (Kubernetes {version}) at {where or '<root>'}: {error.message}")
            except SchemaNotFoundError as error:
                problems.append(f"{name_of(obj)}: {error.message} (a CRD's kind outside an optional component?)")
    return problems


def kubectl() -> str:
    """kubectl's path; a missing kubectl fails the test that needs it, saying what to install."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH: the Kubernetes tests build every kustomization with "
                    "`kubectl kustomize` (kubectl >= 1.32 bundles kustomize 5.5). Install kubectl >= 1.32 "
                    "(the machine image's `kubectl` package has it) and run the tests again.",
                    pytrace=False)
    return path


def kustomize(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
