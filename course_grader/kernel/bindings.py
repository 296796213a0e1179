"""Which notebook names the hidden tests may trust: those the instructor's cells import.

The guard rebinds them before every test cell, so a student who writes ``F = my_fake`` or
``torch = ...`` cannot change what the tests compare against. Names that an answer cell
defines (the student's functions) are never rebound.
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
