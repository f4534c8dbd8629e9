"""The package's layout holds: every module sits in a package named for its concern, and
no package imports what its docstring says it must not (the transport knows nothing of
LLMs, the stages nothing of HTTP/2 or processes, the config nothing of the pipeline)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "extproc"
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "cli.py"}

# What each package may import from the rest of extproc (package, or package.module).
# The table has no loop: a package lower down never imports one above it
# (yamltree, api, transport, wire at the bottom; runtime and the CLI at the top).
ALLOWED = {
    "yamltree": set(),
    "transport": set(),
    "wire": set(),                                     # Envoy's messages as bytes (compiled)
    "api": set(),
    "credentials": set(),
    "dialects": {"api"},
    "plugin_api": set(),
    "plugins": {"plugin_api", "guardrails"},           # the injection model it trains
    "observability": {"wire", "yamltree"},
    "store": {"yamltree", "transport.eager"},
    "guardrails": {"api", "dialects", "plugin_api", "yamltree"},
    "runs": set(),                                     # what a run is: pure, below everything that uses it
    "config": {"api", "credentials", "dialects", "guardrails", "observability", "runs", "store", "yamltree"},   # each section's own parser
    "mock": {"api"},
    "translate": {"api", "dialects"},
    "pipeline": {"api", "config", "dialects", "observability", "wire"},
    "stages": {"api", "config", "dialects", "guardrails", "observability", "pipeline", "pools", "runs", "store",
               "translate", "transport.eager"},
    "pools": {"config"},                               # pool providers' signals and picker
    "console": {"config", "guardrails", "runs", "store", "yamltree"},    # the supervisor hands it the key operation
    "runtime": {"api", "config", "console", "credentials", "dialects", "guardrails", "observability", "pipeline", "pools",
                "runs", "stages", "store", "translate", "transport", "yamltree"},
}


@functools.cache
def _parsed(path: Path) -> ast.Module:
    """A file's tree, parsed once for all the checks below (~7 s of CPU when each parsed it again)."""
    return ast.parse(path.read_text())


def _imports(path: Path) -> set[str]:
    """The extproc modules a file imports, as dotted names below extproc."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(_parsed(path)):
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


# --- import cycles -----------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The extproc modules a file imports (anywhere in it, functions included, and under
    `if TYPE_CHECKING:` too: a loop of types only is a loop a reader follows all the same)."""
    tree = _parsed(path)
    package = _module_name(path).split(".") if path.name == "__init__.py" else _module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                module = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                name = f"{module}.{alias.name}"
                found.add(name if name in modules else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in modules and name != _module_name(path)}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _module_imports(path, set(paths)) for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one node (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_files():
    assert _cycles(_import_graph()) == []


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, imported in _import_graph().items():
        own = module.split(".")[1] if "." in module else module
        packages.setdefault(own, set()).update(
            name.split(".")[1] for name in imported if "." in name and name.split(".")[1] != own)
    assert _cycles(packages) == []


def test_the_cycle_check_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# What a dialect's or an endpoint's name may be compared with only inside these packages:
# dialects/ (the codecs) and mock/ (the providers it fakes). api/ reads each JSON shape with
# its own functions (chat_prompt_texts, responses_usage_from_event, ...) that the codecs
# call: it never dispatches on an endpoint's kind.
DIALECT_PACKAGES = ("dialects", "mock")
_DIALECT_NAMES = {"openai", "anthropic", "chat", "completions", "embeddings", "responses", "messages",
                  "count_tokens", "models", "model", "response", "response_cancel", "response_input_items"}
_NAMED_BY = {"kind", "dialect", "provider_kind", "caller_dialect"}


def _names_a_dialect(node: ast.AST) -> bool:
    """`x.kind`, `x.dialect`, `kind`, ...: an expression whose value is a dialect's or an endpoint's name."""
    return isinstance(node, ast.Attribute) and node.attr in _NAMED_BY or \
        isinstance(node, ast.Name) and node.id in _NAMED_BY


def _literal_names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def dialect_comparisons(source: str, where: str) -> list[str]:
    """Where a module compares a dialect's or endpoint's name with a literal, or keeps a
    table keyed by endpoint kinds."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_a_dialect(o) for o in operands) and \
                    any(_literal_names(o) & _DIALECT_NAMES for o in operands):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)[:80]}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if len(keys & (_DIALECT_NAMES - {"openai", "anthropic", "model", "models", "response"})) >= 2:
                found.append(f"{where}:{node.lineno}: a table keyed by endpoint kinds")
    return found


def test_no_dialect_or_endpoint_name_is_compared_outside_the_dialects():
    found = [line for path in sorted(PACKAGE.rglob("*.py"))
             if path.relative_to(PACKAGE).parts[0] not in DIALECT_PACKAGES
             for line in dialect_comparisons(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert found == []


def test_the_dialect_check_finds_a_comparison():
    """The check above can fail: it finds the comparisons the codecs replaced."""
    sample = ('def f(call, kind):\n    if call.endpoint.kind == "chat":\n        return 1\n'
              '    return kind in ("messages", "count_tokens") or call.dialect != "anthropic"\n'
              'PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}\n'
              'def g(guardrail):\n    return guardrail.kind == "pii"\n')
    assert len(dialect_comparisons(sample, "sample")) == 4


def test_every_package_is_in_the_wheel():
    """The quickstart installs with `pip install .` (not editable): a package missing from
    pyproject.toml's list is missing there, though an editable install still finds it."""
    import tomllib
    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "extproc").rglob("__init__.py")}
    assert found - listed == set()


STAGE_FOLDERS = {"accounting", "budget", "cache", "guard", "mcp", "runs"}


def test_the_stages_are_grouped_by_concern():
    """stages/ holds the request path's stages and a folder per concern (stages/__init__.py);
    a concern's stage lives in its folder, not beside the request path's."""
    stages = PACKAGE / "stages"
    assert {p.parent.name for p in stages.glob("*/__init__.py")} == STAGE_FOLDERS
    beside = [p.name for p in stages.glob("*.py") if p.stem.split("_")[0] in STAGE_FOLDERS | {"meter", "usage", "record"}]
    assert beside == [], beside


DIALECT_FAMILIES = {"anthropic", "bedrock", "google", "openai"}


def test_a_dialect_family_is_a_folder():
    """dialects/ holds a folder per API family (its codecs in dialect.py, its requests,
    answers and streams beside them) and, at its root, only what every family shares."""
    dialects = PACKAGE / "dialects"
    assert {p.parent.name for p in dialects.glob("*/__init__.py")} == DIALECT_FAMILIES
    for family in DIALECT_FAMILIES:
        assert (dialects / family / "dialect.py").exists(), family
    family_prefixes = ("chat_", "messages_", "responses", "gemini", "converse_", "openai", "anthropic", "bedrock")
    beside = [p.name for p in dialects.glob("*.py") if p.stem.startswith(family_prefixes)]
    assert beside == [], beside

