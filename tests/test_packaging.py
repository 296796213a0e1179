"""The project's package lists agree with one another."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {name(r): r.replace(" ", "") for r in reqs}


def test_environment_yml_names_the_same_packages_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {name(d): d.replace(" ", "") for d in conda + pip if not d.startswith("-e") and name(d) not in ("python", "pip")}
    expected = pyproject_requirements()
    assert listed.keys() == expected.keys(), (
        f"only in environment.yml: {sorted(listed.keys() - expected.keys())}, "
        f"only in pyproject.toml: {sorted(expected.keys() - listed.keys())}")
    for package, requirement in expected.items():
        if package != "torch":  # environment.yml pins torch as CI does
            assert listed[package] == requirement, f"{package}: {listed[package]} vs pyproject's {requirement}"


def test_constraints_pin_every_requirement_and_torch_2_13():
    pins = {name(line): line.split("==", 1)[1] for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    missing = pyproject_requirements().keys() - pins.keys()
    assert not missing, f"constraints.txt does not pin {sorted(missing)}: run `make lock`"
    assert pins["torch"] == "2.13.0"
