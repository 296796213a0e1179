"""Notebooks import the references an exercise must not use only after that exercise.

Each graded exercise's visible check (``@exercise(forbid=...)``) names in ``.forbidden`` what the
answer must not call: course_lib's own version, and the PyTorch function that does the same. No
code cell above the exercise may put one of them in the student's namespace: an import of it
(``from course_lib.x import f``, ``... as g``), an import of a course_lib module that holds it
(``from course_lib import x``; torch's modules are not counted: the student has torch anyway), or a
use of it through such a module (``x.f``). The released notebooks are read with ``ast``, as the
student gets them (their hidden tests are gone).
"""
from __future__ import annotations

import ast
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from course_lib import checks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9]*/*.ipynb"))


@dataclass(frozen=True)
class Exercise:
    cell: int            # index of the answer cell
    grade_id: str
    check: str           # the name of the check in course_lib.checks
    forbidden: dict      # forbidden name -> the object (a tuple spec's function)


def _source(cell: dict) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def _tree(cell: dict) -> ast.AST | None:
    """The cell's code without IPython magics and shell lines, parsed; None when it does not parse."""
    lines = [line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _called_checks(tree: ast.AST | None) -> list[str]:
    """The ``checks.check_xxx(...)`` that a cell calls."""
    return [node.func.attr for node in ast.walk(tree or ast.Module(body=[], type_ignores=[]))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"
            and node.func.attr.startswith("check_")]


def exercises(cells: list[dict]) -> list[Exercise]:
    """Every graded answer cell (nbgrader solution, grade_id not practice_*) with the forbidden
    objects of the checks that the test cells after it (up to the next answer cell) call."""
    found = []
    answers = [i for i, c in enumerate(cells)
               if c["cell_type"] == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    for n, i in enumerate(answers):
        grade_id = cells[i]["metadata"]["nbgrader"].get("grade_id", "")
        if grade_id.startswith("practice_"):
            continue
        end = answers[n + 1] if n + 1 < len(answers) else len(cells)
        for j in range(i + 1, end):
            if cells[j]["cell_type"] != "code":
                continue
            for name in _called_checks(_tree(cells[j])):
                check = getattr(checks, name)
                forbidden = {key: spec[0] if isinstance(spec, tuple) else spec
                             for key, spec in getattr(check, "forbidden", {}).items()}
                if forbidden:
                    found.append(Exercise(i, grade_id, name, forbidden))
    return found


def _is_course_lib_module(obj: object) -> bool:
    return isinstance(obj, ModuleType) and (obj.__name__ == "course_lib" or obj.__name__.startswith("course_lib."))


def _import(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _from_import(module: str, name: str) -> object:
    mod = _import(module)
    if mod is None:
        return None
    if hasattr(mod, name):
        return getattr(mod, name)
    return _import(f"{module}.{name}")


def _which(obj: object, forbidden: dict) -> str | None:
    """The forbidden name that ``obj`` is, or that the course_lib module ``obj`` holds."""
    for key, bad in forbidden.items():
        if obj is bad:
            return key
    if _is_course_lib_module(obj):
        for key, bad in forbidden.items():
            if any(value is bad for value in vars(obj).values()):
                return f"{key} (an attribute of {obj.__name__})"
    return None


def _resolve(node: ast.AST, bound: dict[str, ModuleType]) -> object:
    """``mod.a.b`` where ``mod`` is a course_lib module bound by an import above; None otherwise."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, bound)
        if _is_course_lib_module(base):
            return getattr(base, node.attr, None)
    return None


def violations(cells: list[dict], notebook: str) -> list[str]:
    """One line per import or use, above an exercise, of what that exercise forbids."""
    found = []
    for exercise in exercises(cells):
        bound: dict[str, ModuleType] = {}  # names bound to course_lib modules by the imports above
        for index in range(exercise.cell):
            if cells[index]["cell_type"] != "code":
                continue
            tree = _tree(cells[index])
            if tree is None:
                continue
            uses = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        obj = _import(alias.name)
                        text = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                        uses.append((text, obj))
                        top = obj if alias.asname else _import(alias.name.split(".")[0])
                        if _is_course_lib_module(top):
                            bound[alias.asname or alias.name.split(".")[0]] = top
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        text = f"from {node.module} import {alias.name}"
                        text += f" as {alias.asname}" if alias.asname else ""
                        if alias.name == "*":
                            uses.append((text, _import(node.module)))
                            continue
                        obj = _from_import(node.module, alias.name)
                        uses.append((text, obj))
                        if _is_course_lib_module(obj):
                            bound[alias.asname or alias.name] = obj
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    obj = _resolve(node, bound)
                    if obj is not None:
                        uses.append((ast.unparse(node), obj))
            for text, obj in uses:
                name = _which(obj, exercise.forbidden)
                line = (f"{notebook}: cell {index} uses `{text}`, that is {name}, before exercise "
                        f"{exercise.grade_id!r} (cell {exercise.cell}), whose {exercise.check} forbids it: "
                        f"import it after the exercise's test cell")
                if name and line not in found:
                    found.append(line)
    return found


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_references_are_imported_only_after_their_exercise(path):
    cells = _cells(path)
    assert exercises(cells), f"{path.parent.name}: no graded exercise with a forbidden reference found"
    found = violations(cells, path.parent.name)
    assert not found, "\n".join(found)


def test_every_released_notebook_is_read():
    assert {p.parent.name for p in NOTEBOOKS} >= {
        "01_attention", "02_multi_head_attention", "03_positional_encoding", "04_encoder", "05_decoder",
        "06_training", "07_bert", "08_gpt", "09_efficient_attention"}


# --- the reader itself, on a made-up notebook -----------------------------------------------------

def _code(source: str, **nbgrader) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"nbgrader": nbgrader} if nbgrader else {}}


def _notebook(*above: str, below: str = "") -> list[dict]:
    return [*(_code(s) for s in above),
            {"cell_type": "markdown", "source": "## Exercise", "metadata": {}},
            _code("def top_p_filter(logits, p):\n    ...", solution=True, grade=False, grade_id="top_p_filter"),
            _code("checks.check_top_p_filter(top_p_filter)", solution=False, grade=True, grade_id="test_top_p_filter"),
            _code(below)]


@pytest.mark.parametrize("source, fragment", [
    ("from course_lib.sampling import top_p_filter", "from course_lib.sampling import top_p_filter"),
    ("from course_lib.sampling import top_p_filter as nucleus", "as nucleus"),
    ("from course_lib import sampling", "from course_lib import sampling"),
    ("from course_lib import sampling as s", "from course_lib import sampling as s"),
    ("import course_lib.sampling as s", "import course_lib.sampling as s"),
    ("from course_lib.sampling import *", "import *"),
    ("%matplotlib inline\nimport course_lib.sampling\ncourse_lib.sampling.generate", "import course_lib.sampling"),
])
def test_an_import_above_the_exercise_is_reported(source, fragment):
    found = violations(_notebook("import torch", source), "made_up")
    assert found and fragment in found[0] and "'top_p_filter'" in found[0] and "check_top_p_filter" in found[0], found


def test_a_use_through_a_module_imported_earlier_is_reported():
    found = violations(_notebook("import course_lib", "course_lib.sampling.top_p_filter(x, 0.9)"), "made_up")
    assert any("course_lib.sampling.top_p_filter" in line and "cell 1" in line for line in found), found


@pytest.mark.parametrize("source", [
    "from course_lib.sampling import generate, sample_next",   # not the exercise's reference
    "import torch.nn.functional as F",                       # torch modules are the student's anyway
    "from course_lib import checks",
    "this is not python %%",
])
def test_what_the_exercise_allows_is_not_reported(source):
    assert violations(_notebook(source, below="from course_lib import sampling"), "made_up") == []
