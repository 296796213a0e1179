"""Which notebook names the hidden tests may trust: those the instructor's cells import or define.

The guard rebinds the imported ones before every test cell (once the instructor's cell has
bound them), so a student who writes ``F = my_fake`` or ``torch = ...`` cannot change what the
tests compare against. Names that an answer cell defines (the student's functions) are never
rebound. Names the instructor's cells define are never taken for a student's shadowing of a
builtin.
"""
from __future__ import annotations

import ast

import nbformat


def _imports(source: str) -> dict[str, str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    found[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = f"{node.module}:{alias.name}"
    return found


def _defined(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {target.id for node in ast.walk(tree)
            for target in (node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)])
            if isinstance(target, ast.Name)} | {
        node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def instructor_bindings(released: nbformat.NotebookNode) -> dict[str, str]:
    """name -> 'module' or 'module:attr' for every import in the released notebook's own cells."""
    found, answers = {}, set()
    for cell in released.cells:
        if cell.cell_type != "code":
            continue
        if cell.metadata.get("nbgrader", {}).get("solution"):
            answers |= _defined(cell.source)
        else:
            found.update(_imports(cell.source))
    return {name: target for name, target in found.items() if name not in answers}


def instructor_names(released: nbformat.NotebookNode) -> list[str]:
    """Every name the released notebook's own (non-answer) code cells define or import."""
    found: set[str] = set()
    for cell in released.cells:
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("solution"):
            found |= _defined(cell.source) | set(_imports(cell.source))
    return sorted(found)
