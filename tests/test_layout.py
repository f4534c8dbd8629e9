"""The package's layout holds: every module sits in a package named for its concern, and
no package imports what its docstring says it must not (the transport knows nothing of
LLMs, the stages nothing of HTTP/2 or processes, the config nothing of the pipeline)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "extproc"
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py"}

# What each package may import from the rest of extproc (package, or package.module).
ALLOWED = {
    "transport": set(),
    "api": set(),
    "config": {"api", "guardrails", "observability", "store"},     # each section's own parser
    "guardrails": {"api", "config", "plugin_api"},
    "store": {"config", "observability", "transport.eager"},
    "observability": {"config", "store"},
    "mock": {"api"},
    "translate": {"api"},
    "pipeline": {"api", "config", "guardrails", "observability", "stages", "store", "translate"},
    "stages": {"api", "config", "guardrails", "observability", "pipeline", "store", "translate", "transport.eager"},
    "runtime": {"api", "config", "guardrails", "observability", "pipeline", "stages", "store", "translate",
                "transport"},
    "plugin_api": set(),
    "plugins": {"plugin_api"},
}


def _imports(path: Path) -> set[str]:
    """The extproc modules a file imports, as dotted names below extproc."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
            elif node.module and node.module.split(".")[0] == "extproc":
                base = []
                node_module = node.module.split(".", 1)[1] if "." in node.module else ""
                found.update(f"{node_module}.{a.name}".strip(".") for a in node.names)
                continue
            else:
                continue
            module = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{module}.{alias.name}".strip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("extproc."))
    return found


def test_no_module_outside_a_package():
    assert {p.name for p in PACKAGE.glob("*.py")} <= TOP_LEVEL_MODULES


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    allowed = ALLOWED[package] | {package}
    wrong = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in _imports(path):
            if not any(name == rule or name.startswith(rule + ".") for rule in allowed):
                wrong.append(f"{path.relative_to(PACKAGE)} imports extproc.{name}")
    assert wrong == []


def test_every_package_says_what_it_holds():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(docstring) > 40, f"{init.relative_to(PACKAGE)} has no docstring worth the name"


def test_every_package_has_its_rules():
    assert {p.parent.name for p in PACKAGE.glob("*/__init__.py")} == set(ALLOWED)
