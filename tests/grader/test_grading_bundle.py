"""``course release --bundle``: the student distribution holds no solution, hidden test or
grading data, and its notebooks run, with its own course_lib, up to their first exercise."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_grader.markers import ALL as MARKERS
from course_grader.markers import HIDDEN_REGION as HIDDEN
from course_grader.markers import SOLUTION_REGION as SOLUTION

from adversarial.cases import ASSIGNMENT
from grading_course import ROOT, filled, released


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from course_grader.release.bundle import build_bundle
    tmp = tmp_path_factory.mktemp("bundle")
    path = build_bundle(ROOT, tmp / "student.tar.gz")
    with tarfile.open(path) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    return tmp / "unpacked" / "transformers-course"


def code_of(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_bundle_has_the_student_files_and_no_grading_data(bundle):
    names = {str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()}
    assert {"README.md", "pyproject.toml", "constraints.txt", "course_lib/attention.py", "course_update.py"} <= names
    released = {str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*/*.ipynb")}
    assert released and released <= names
    assert not [n for n in names if re.search(r"solutions/|gradebook|submitted/|autograded/|feedback/|grades\.csv"
                                              r"|nbgrader_config|course_grader/|tests/|\.authoring", n)]
    assert "[project.scripts]" not in (bundle / "pyproject.toml").read_text()


def test_bundle_holds_no_hidden_test_and_no_solution(bundle):
    """No line of a hidden test anywhere; no line of a solution in the notebooks, except lines
    that the instructor's visible code or course_lib (public by design) also contain."""
    public, hidden, solution = set(), set(), set()
    for path in (ROOT / "solutions").glob("*/*.ipynb"):
        code = code_of(path)
        hidden |= {line.strip() for block in HIDDEN.findall(code) for line in block.splitlines()}
        solution |= {line.strip() for block in SOLUTION.findall(code) for line in block.splitlines()}
        public |= {line.strip() for line in SOLUTION.sub("", HIDDEN.sub("", code)).splitlines()}
    for path in bundle.glob("course_lib/**/*.py"):
        public |= {line.strip() for line in path.read_text().splitlines()}
    secret = lambda lines: {line for line in lines
                            if len(line) >= 12 and not line.startswith("#") and line not in public}
    hidden, solution = secret(hidden), secret(solution)
    assert hidden and solution
    for path in (p for p in bundle.rglob("*") if p.is_file()):
        text = path.read_text(errors="ignore")
        assert not [m for m in MARKERS if m in text], path
        assert not [line for line in hidden if line in text], path
        if path.suffix == ".ipynb":
            lines = {line.strip() for line in code_of(path).splitlines()}
            assert not solution & lines, (path, sorted(solution & lines)[:3])


def test_bundled_notebooks_run_up_to_their_first_exercise(bundle):
    """Every cell before the first exercise runs; the first error is the unfinished exercise's
    NotImplementedError (raised as it is, or named by the visible check that called it)."""
    env = dict(os.environ, PYTHONPATH=str(bundle), NBGRADER_EXECUTION="validate")
    found = subprocess.run([sys.executable, "-c", "import course_lib; print(course_lib.__file__)"],
                           capture_output=True, text=True, env=env, cwd=bundle)
    assert found.stdout.startswith(str(bundle)), "the bundle's own course_lib must be the one imported"
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "NBGRADER_EXECUTION")}
    os.environ.update(PYTHONPATH=str(bundle), NBGRADER_EXECUTION="validate")
    try:
        for path in sorted(bundle.glob("notebooks/*/*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            with pytest.raises(CellExecutionError) as stopped:
                NotebookClient(nb, timeout=120, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute()
            error = stopped.value
            assert error.ename == "NotImplementedError" or (
                error.ename == "CheckFailed" and "raised NotImplementedError" in error.evalue), f"{path.name}: {error}"
            ran = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
            assert ran, path
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_bundled_update_takes_a_corrected_notebook_and_keeps_the_answers(bundle, tmp_path):
    """``course_update.py`` runs on its own in the bundle (no course_grader there)."""
    new = tmp_path / "new" / ASSIGNMENT
    new.mkdir(parents=True)
    corrected = released(ASSIGNMENT)
    corrected.cells[0].source += "\n(corrected)"
    nbformat.write(corrected, new / f"{ASSIGNMENT}.ipynb")
    mine = tmp_path / "mine"
    (mine / ASSIGNMENT).mkdir(parents=True)
    answered = filled(ASSIGNMENT)
    nbformat.write(answered, mine / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    done = subprocess.run([sys.executable, str(bundle / "course_update.py"), ASSIGNMENT, "--from", str(new),
                           "--into", str(mine)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    merged = nbformat.read(mine / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert merged.cells[0].source.endswith("(corrected)")
    solution = lambda nb: [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert solution(merged) == solution(answered)
