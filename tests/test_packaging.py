"""The project's package lists agree with one another, and the metadata says what the README says."""
import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = {"lab", "grader", "dev"}


def name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements() -> dict[str, str]:
    reqs = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    return {name(r): r.replace(" ", "") for r in reqs}


def test_extras_by_audience():
    extras = PROJECT["optional-dependencies"]
    assert extras.keys() == EXTRAS, f"extras {sorted(extras)}: the Makefile installs {sorted(EXTRAS)}"
    base = {name(r) for r in PROJECT["dependencies"]}
    # The student's `pip install -e .` runs every notebook; JupyterLab is the lab extra's.
    assert {"torch", "transformers", "platformdirs", "rdata", "pysword", "ipywidgets"} <= base
    assert "jupyterlab" not in base and "pytest" not in base
    assert {"nbgrader", "distributed"} <= {name(r) for r in extras["grader"]}
    dev = {name(r) for r in extras["dev"]}
    assert {"pytest", "pytest-xdist", "nbval", "playwright", "pyyaml", "ruff"} <= dev
    assert any(re.fullmatch(r"ruff==[\d.]+", r) for r in extras["dev"]), "ruff is pinned: its rules change"


def test_environment_yml_names_the_same_packages_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {name(d): d.replace(" ", "") for d in conda + pip
              if not d.startswith("-") and name(d) not in ("python", "pip")}
    expected = pyproject_requirements()
    assert listed.keys() == expected.keys(), (
        f"only in environment.yml: {sorted(listed.keys() - expected.keys())}, "
        f"only in pyproject.toml: {sorted(expected.keys() - listed.keys())}")
    for package, requirement in expected.items():
        if package != "torch":  # environment.yml pins torch as CI does
            assert listed[package] == requirement, f"{package}: {listed[package]} vs pyproject's {requirement}"
    python = next(d for d in conda if name(d) == "python")
    assert python == "python=3.11"


def test_constraints_pin_every_requirement_and_torch_2_13():
    pins = {name(line): line.split("==", 1)[1] for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    missing = pyproject_requirements().keys() - pins.keys()
    assert not missing, f"constraints.txt does not pin {sorted(missing)}: run `make lock`"
    assert pins["torch"] == "2.13.0"
    for requirement in pyproject_requirements().values():
        if "==" in requirement:
            assert pins[name(requirement)] == requirement.split("==", 1)[1], f"{requirement} vs constraints.txt"


def test_python_3_11_as_the_readme_says():
    assert PROJECT["requires-python"] == ">=3.11"
    assert "Python 3.11 or newer" in (ROOT / "README.md").read_text()


def test_licence_in_spdx_form_with_its_files():
    assert PROJECT["license"] == "MIT"
    for file in PROJECT["license-files"]:
        assert (ROOT / file).is_file(), f"license-files names {file}, which is missing"
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_one_version_number():
    """pyproject.toml holds it; course_lib may only read it back from the installed metadata."""
    assert importlib.metadata.version("transformers-course") == PROJECT["version"]
    literal = re.compile(r"""__version__\s*=\s*["']\d""")
    written = [str(p.relative_to(ROOT)) for p in (ROOT / "course_lib").rglob("*.py") if literal.search(p.read_text())]
    assert not written, f"{written} write a version number of their own: read importlib.metadata instead"
    import course_lib
    assert getattr(course_lib, "__version__", PROJECT["version"]) == PROJECT["version"]
