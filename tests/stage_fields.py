"""Which fields of the per-request Call each pipeline stage reads and writes, read from
the stages' code: what tests/test_stage_state.py holds their declarations to.

A stage's code is its class's methods and every function or class of extproc.stages
they call by name, followed through the modules that import them. `call.x` and
`self.call.x` count; assigning a field, or calling a method of it that changes it
(`call.generated.append(...)`), is a write; any other use a read. The Call's own
properties and methods count as the fields they read."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

STAGES = Path(__file__).resolve().parent.parent / "extproc" / "stages"
_MUTATORS = {"append", "extend", "update", "setdefault", "add", "pop", "clear", "insert", "remove", "discard"}
# The Call's derived values and what they read; its helpers count as nothing.
DERIVED = {
    "dialect": {"endpoint", "path"},
    "caller": {"endpoint", "path"},
    "codec": {"endpoint"},
    "team": {"key"},
    "prompt_tokens": {"endpoint", "body", "model"},
    "output_cap": {"endpoint", "body", "model", "output_reserved", "config"},
    "own": set(), "owned": set(), "new_reply": set(),
}


@dataclass
class Uses:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)


def _module_name(path: Path) -> str:
    return ".".join(("extproc", "stages", *path.relative_to(STAGES).with_suffix("").parts))


class _Modules:
    def __init__(self) -> None:
        self.trees: dict[str, ast.Module] = {}
        for path in sorted(STAGES.rglob("*.py")):
            self.trees[_module_name(path)] = ast.parse(path.read_text())
        self.defs: dict[str, dict[str, ast.AST]] = {}
        self.imports: dict[str, dict[str, tuple[str, str]]] = {}
        for name, tree in self.trees.items():
            self.defs[name] = {node.name: node for node in tree.body
                               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            package = name.rsplit(".", 1)[0] if not name.endswith("__init__") else name
            found = {}
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                    for alias in node.names:
                        found[alias.asname or alias.name] = (module, alias.name)
            self.imports[name] = found

    def resolve(self, module: str, name: str) -> tuple[str, ast.AST] | None:
        if name in self.defs.get(module, {}):
            return module, self.defs[module][name]
        if name in self.imports.get(module, {}):
            target, original = self.imports[module][name]
            if target in self.defs and original in self.defs[target]:
                return target, self.defs[target][original]
        return None

    def stage_classes(self) -> list[tuple[str, ast.ClassDef, dict[str, tuple[str, ast.AST]]]]:
        """Every subclass of Stage, however far down, with its methods (inherited ones
        included) as (module, node)."""
        found: dict[int, tuple[str, ast.ClassDef, dict]] = {}
        grew = True
        while grew:
            grew = False
            for module, tree in self.trees.items():
                for node in tree.body:
                    if not isinstance(node, ast.ClassDef) or id(node) in found:
                        continue
                    inherited: dict | None = None
                    for base in node.bases:
                        if isinstance(base, ast.Name) and base.id == "Stage":
                            inherited = {}
                        elif isinstance(base, ast.Name):
                            target = self.resolve(module, base.id)
                            if target is not None and id(target[1]) in found:
                                inherited = dict(found[id(target[1])][2])
                    if inherited is None:
                        continue
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            inherited[item.name] = (module, item)
                    found[id(node)] = (module, node, inherited)
                    grew = True
        return list(found.values())

    def is_stage(self, node: ast.AST) -> bool:
        return isinstance(node, ast.ClassDef) and any(node is cls for _, cls, _ in self.stage_classes())


def _call_field(node: ast.AST) -> str | None:
    """`x` of `call.x` or `self.call.x`."""
    if not isinstance(node, ast.Attribute):
        return None
    owner = node.value
    if isinstance(owner, ast.Name) and owner.id == "call":
        return node.attr
    if isinstance(owner, ast.Attribute) and owner.attr == "call" and isinstance(owner.value, ast.Name) \
            and owner.value.id == "self":
        return node.attr
    return None


def _uses_in(node: ast.AST, uses: Uses) -> list[str]:
    """Adds the call fields `node` uses; returns the names it calls."""
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    called = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call):
            if isinstance(inner.func, ast.Name):
                called.append(inner.func.id)
            elif isinstance(inner.func, ast.Attribute) and isinstance(inner.func.value, ast.Name) \
                    and inner.func.value.id == "self":
                called.append("self." + inner.func.attr)
        name = _call_field(inner)
        if name is None:
            continue
        if name in DERIVED:
            uses.reads |= DERIVED[name]
            continue
        parent = parents.get(inner)
        if isinstance(inner.ctx, (ast.Store, ast.Del)) or isinstance(parent, ast.AugAssign) and parent.target is inner:
            uses.writes.add(name)
        elif isinstance(parent, ast.Attribute) and parent.attr in _MUTATORS:
            uses.writes.add(name)
        elif isinstance(parent, ast.Subscript) and isinstance(parent.ctx, (ast.Store, ast.Del)):
            uses.writes.add(name)
        else:
            uses.reads.add(name)
    return called


HOOKS = ("request_headers", "request_body", "response_headers", "response_body", "response_trailers", "done")
_FIELDS = None


def _call_fields() -> set[str]:
    from extproc.pipeline.call import Call
    return {name for name in Call.__slots__ if not name.startswith("_")}


def stage_uses() -> dict[type, dict[str, Uses]]:
    """Each Stage subclass of extproc.stages (the class object) and, per hook it has,
    the Call fields that hook's code uses."""
    import importlib
    modules = _Modules()
    fields = _call_fields()
    found: dict[type, dict[str, Uses]] = {}
    for module, cls, methods in modules.stage_classes():
        per_hook = {}
        for hook in HOOKS:
            if hook not in methods:
                continue
            uses = Uses()
            todo = [methods[hook]]
            seen: set[int] = set()
            while todo:
                where, node = todo.pop()
                if id(node) in seen:
                    continue
                seen.add(id(node))
                for name in _uses_in(node, uses):
                    if name.startswith("self."):
                        if name[5:] in methods:
                            todo.append(methods[name[5:]])
                        continue
                    target = modules.resolve(where, name)
                    if target is not None and not modules.is_stage(target[1]):
                        todo.append(target)
            uses.reads &= fields
            uses.writes &= fields
            uses.reads -= uses.writes
            per_hook[hook] = uses
        found[getattr(importlib.import_module(module), cls.name)] = per_hook
    return found


def declared_uses(per_hook: dict[str, Uses]) -> Uses:
    """A stage's uses over all its hooks, as its declaration states them: what it
    writes, and what it only reads (the config and the reply, every stage's, aside)."""
    total = Uses()
    for uses in per_hook.values():
        total.reads |= uses.reads
        total.writes |= uses.writes
    total.reads -= total.writes | UNIVERSAL
    total.writes -= UNIVERSAL
    return total


# Every stage reads the config snapshot and adds to the reply of the message at hand.
UNIVERSAL = {"config", "reply"}
