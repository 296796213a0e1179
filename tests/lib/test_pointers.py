"""The "(introduced in notebook NN_topic)" pointers of course_lib are derived from the notebooks.

A module's docstring names the first notebook that imports it, and an object's docstring may
name the first notebook that uses it by name (``from course_lib.x import name`` or
``module.name``); nothing else carries a pointer, so they cannot drift. The notebooks' uses are
read from the code cells of solutions/ with ``ast`` (hidden tests excluded: they are the
grader's, not the student's). Notebook 00 looks ahead: it trains the Transformer, the batches
and the loop that notebooks 04-06 teach, as a black box next to the recurrent models it
introduces, so it counts as the first user only of what no later notebook uses.
"""
from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POINTER = re.compile(r"\(introduced\s+in\s+notebook\s+(\w+)\)")
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
PREVIEWS = {"00_recurrence"}  # uses later notebooks' concepts before they are taught


def _module_name(dotted: str) -> str | None:
    path = ROOT.joinpath(*dotted.split("."))
    return dotted if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() else None


def notebook_uses() -> dict[tuple[str, str | None], list[str]]:
    """{(module, object or None for the module itself): notebooks that use it, in course order,
    the previews last}."""
    uses: dict[tuple[str, str | None], set[str]] = {}
    for path in sorted(ROOT.glob("solutions/[0-9]*/*.ipynb")):
        notebook, aliases = path.parent.name, {}
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = HIDDEN.sub("", "".join(cell["source"]))
            source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
            tree = ast.parse(source)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib"):
                    for alias in node.names:
                        module = _module_name(f"{node.module}.{alias.name}")
                        if module:  # from course_lib import checks
                            aliases[alias.asname or alias.name] = module
                            uses.setdefault((module, None), set()).add(notebook)
                        else:
                            uses.setdefault((node.module, alias.name), set()).add(notebook)
                            uses.setdefault((node.module, None), set()).add(notebook)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("course_lib"):
                            uses.setdefault((alias.name, None), set()).add(notebook)
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                    uses.setdefault((aliases[node.value.id], node.attr), set()).add(notebook)
    return {key: sorted(value, key=lambda name: (name in PREVIEWS, name)) for key, value in uses.items()}


def library_modules() -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in (ROOT / "course_lib").rglob("*.py"))


USES = notebook_uses()


@pytest.mark.parametrize("module", library_modules())
def test_pointers_name_the_first_notebook_that_uses_them(module):
    mod = importlib.import_module(module)
    first = USES.get((module, None), [None])[0]
    found = POINTER.findall(mod.__doc__ or "")
    expected = [first] if first and module != "course_lib" else []
    assert found == expected, (f"{module}'s docstring should point to {expected or 'no notebook'}, "
                               f"it says {found}")
    for name, obj in vars(mod).items():
        if getattr(obj, "__module__", None) != module or not (obj.__doc__ or "").strip():
            continue
        pointers = POINTER.findall(obj.__doc__)
        if not pointers:
            continue
        users = USES.get((module, name)) or USES.get((module.rsplit(".", 1)[0], name))
        assert users, f"{module}.{name} says {pointers}, but no notebook uses it by name: drop the pointer"
        assert pointers == [users[0]], f"{module}.{name} says {pointers}; the first notebook that uses it is {users[0]}"


def test_the_notebook_reader_sees_imports_and_attributes():
    assert "01_attention" in USES[("course_lib.attention", "scaled_dot_product_attention")]
    assert "08_gpt" in USES[("course_lib.sampling", "generate")]  # sampling.generate(...)
