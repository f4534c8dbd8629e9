"""The configuration reference documents every key the filter config's parsers accept.

Each section parser names the keys it accepts in a `.only_keys(...)` call (anything else
is reported as a typo). This test collects those names from the source of extproc/ and
requires each one to appear in docs/configuration.md as `key` (in backticks), so a key
added to a parser cannot ship undocumented.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "extproc"
REFERENCE = ROOT / "docs" / "configuration.md"


def _strings(node: ast.AST) -> list[str]:
    """The string constants an expression holds: a tuple or list of names, a dict's values
    (`{"pii": ("entities",), ...}[kind]` picks one of them), or a single string."""
    if isinstance(node, ast.Subscript):
        return _strings(node.value)
    if isinstance(node, ast.Dict):
        return [s for value in node.values for s in _strings(value)]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _strings(element)]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    return []


def _assigned(scope: ast.AST, name: str) -> list[ast.expr]:
    """The values assigned to `name` in a function (or module) body."""
    values = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            if any(isinstance(target, ast.Name) and target.id == name for target in node.targets):
                values.append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            values.append(node.value)
    return values


@functools.cache
def accepted_keys() -> tuple[dict[str, set[str]], list[str]]:
    """Every key some `.only_keys(...)` under extproc/ accepts, with where it is accepted;
    and the arguments this test could not read (a parser written in a way it does not know).
    Read once for the three tests (~3 s of CPU each)."""
    keys: dict[str, set[str]] = {}
    unreadable: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for scope in scopes:
            # Calls directly in this scope (nested functions are scopes of their own).
            for call in _own_calls(scope):
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                for argument in call.args:
                    value = argument.value if isinstance(argument, ast.Starred) else argument
                    if isinstance(value, ast.Name):
                        found = [s for assigned in _assigned(scope, value.id) for s in _strings(assigned)]
                    else:
                        found = _strings(value)
                    if not found:
                        unreadable.append(f"{where}: {ast.unparse(argument)}")
                    for key in found:
                        keys.setdefault(key, set()).add(where)
    return keys, unreadable


def _own_calls(scope: ast.AST):
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "only_keys":
            yield node
        stack.extend(ast.iter_child_nodes(node))


def documented_keys() -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", REFERENCE.read_text(encoding="utf-8")))


def test_the_parsers_are_found():
    keys, _ = accepted_keys()
    # The top level and a few keys of different sections: the collection itself works.
    assert {"server", "providers", "models", "keys", "budgets", "guardrails", "store"} <= set(keys)
    assert {"api_key", "key_sha256", "lease_seconds", "entities", "tag_labels"} <= set(keys)


def test_every_argument_of_only_keys_is_readable():
    _, unreadable = accepted_keys()
    assert unreadable == [], (
        "these only_keys(...) arguments are neither string literals nor names assigned "
        "tuples/lists/dicts of strings in the same function, so this test cannot tell which "
        "keys they accept:\n  " + "\n  ".join(unreadable))


def test_every_accepted_key_is_documented():
    keys, _ = accepted_keys()
    documented = documented_keys()
    missing = sorted(key for key in keys if key not in documented)
    assert not missing, (
        f"{len(missing)} config key(s) the parsers accept are not documented in "
        f"{REFERENCE.relative_to(ROOT)} (write each as `key`, with its type, default and an example):\n"
        + "\n".join(f"  {key}  (accepted at {', '.join(sorted(keys[key]))})" for key in missing))
