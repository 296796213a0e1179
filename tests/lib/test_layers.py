"""course_lib's imports point down only: data at the bottom, the concepts above it in course
order, checks and figures on top. Read from the source with ``ast``, so a new import that
points up (or sideways into a later concept) fails here, not in a student's notebook.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lower numbers sit lower: a module may import only from strictly lower layers (and, inside a
# package such as data/ or checks/, from its own package).
LAYERS = {
    "course_lib.validation": -1,  # the argument checks: every layer uses them, they use nothing
    "course_lib.device": 0, "course_lib.data": 0,
    "course_lib.attention": 1,
    "course_lib.multihead": 2, "course_lib.positional": 2, "course_lib.efficient": 2,
    "course_lib.family": 2,  # notebook 10: the prefix LM's mask and T5's task mixing, on plain tensors and strings
    "course_lib.encoder": 3,
    "course_lib.recurrent": 3,  # notebook 00's GRU models: attention's padding mask and the tokenizers' ids
    "course_lib.decoder": 4,
    "course_lib.batching": 5, "course_lib.bert": 5, "course_lib.gpt": 5,
    "course_lib.training": 6, "course_lib.decoding": 6, "course_lib.sampling": 6,
    "course_lib.attention_maps": 6,
    "course_lib.checks": 7, "course_lib.viz": 7,
}


def layer_of(module: str) -> tuple[str, int]:
    for prefix, layer in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, layer
    raise AssertionError(f"{module} has no layer in LAYERS: add it where it belongs")


def course_lib_imports(path: Path, module: str) -> set[str]:
    """The course_lib modules that ``path`` (the module ``module``) imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("course_lib"):
                # `from .. import bert` imports the module course_lib.bert
                found |= {f"{target}.{a.name}" for a in node.names
                          if (ROOT / Path(*target.split(".")) / f"{a.name}.py").exists()} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("course_lib")}
    return found


MODULES = sorted((".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"), p)
                 for p in (ROOT / "course_lib").rglob("*.py") if p != ROOT / "course_lib" / "__init__.py")


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module, path):
    home, layer = layer_of(module)
    for target in course_lib_imports(path, module):
        target_home, target_layer = layer_of(target)
        if target_home == home:
            continue  # inside one package (data/, checks/)
        assert target_layer < layer, (f"{module} (layer {layer}) imports {target} (layer {target_layer}): "
                                      "imports must point down")


def test_data_loads_without_the_model_stack():
    code = ("import sys, course_lib.data, course_lib.data.tokenizers, course_lib.data.dates, "
            "course_lib.data.bible, course_lib.data.assets, course_lib.data.austen, course_lib.data.reviews\n"
            "print(sorted(m for m in sys.modules if m.startswith('course_lib.') and not m.startswith('course_lib.data')"
            " and m != 'course_lib.validation'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"course_lib.data pulled in {out.strip()}"
