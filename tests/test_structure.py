"""The package's shape, as docs/architecture.md describes it: no import circles, no module reaching
into another's private names, no class or function too long to read at once, and each op's facets
in its registry entry."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "graphdsl"
MAX_CLASS_LINES = 150
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def imported(name: str, node: ast.AST) -> list:
    """The graphdsl modules an import statement names: `from a.b import c` names a.b.c where c is a
    module, else a.b. (Parent packages run too, but Python initialises them first, so they make no
    circle of their own.)"""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("graphdsl"):
        return []
    found = {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    if len(found) < len(node.names):
        found.add(node.module)
    return sorted(found)


def import_graph() -> dict:
    """Module -> the graphdsl modules it imports, at the top or inside functions alike."""
    return {name: {m for node in ast.walk(tree) for m in imported(name, node) if m != name}
            for name, tree in TREES.items()}


def test_modules_use_absolute_imports():
    relative = [f"{name}:{node.lineno}" for name, tree in TREES.items() for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative, relative


def test_no_import_circle():
    graph = import_graph()
    state, stack = {}, []

    def visit(name):  # depth-first; a module met again while still open closes a circle
        state[name] = "open"
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name)


def private_names(tree: ast.Module) -> set:
    """`_names` a module defines: its functions, classes and globals, and attributes set on self."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
    return {n for n in found if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_another_modules_private_names():
    owners = {}
    for name, tree in TREES.items():
        for private in private_names(tree):
            owners.setdefault(private, set()).add(name)
    uses = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            used = (node.attr if isinstance(node, ast.Attribute) else
                    [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else None)
            for private in [used] if isinstance(used, str) else used or []:
                if name not in owners.get(private, {name}):
                    uses.append(f"{name}:{node.lineno} uses {private} of {', '.join(sorted(owners[private]))}")
    assert not uses, "\n".join(uses)


def long_units():
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            limit = (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else
                     MAX_FUNCTION_LINES if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None)
            if limit and node.end_lineno - node.lineno + 1 > limit:
                yield f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines (at most {limit})"


def test_no_class_or_function_too_long_to_read_at_once():
    assert not list(long_units())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_says_what_lives_in_it(name):
    assert ast.get_docstring(TREES[name]), f"{name} has no module docstring"
