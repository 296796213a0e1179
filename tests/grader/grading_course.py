"""Scratch courses for the grading tests (tests/grader/test_grading_*.py) and the grading benchmark.

A scratch course holds the course's nbgrader_config.py, solutions/ and notebooks/ of the
assignments it needs, and submissions written by the tests; ``course()`` runs the ``course``
command on it.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from course_grader.markers import without_solution_markers
from course_grader.venv import venv_env

ROOT = Path(__file__).resolve().parents[2]


def make_course(folder: Path, assignments: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", folder)
    for assignment in assignments:
        for kind in ("solutions", "notebooks"):
            shutil.copytree(ROOT / kind / assignment, folder / kind / assignment, dirs_exist_ok=True)
    return folder


def released(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)


def answers(assignment: str) -> dict[str, str]:
    """grade_id -> the solution's answer as a student would write it (markers removed)."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {c.metadata.nbgrader["grade_id"]: without_solution_markers(c.source)
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def filled(assignment: str, **overrides: str | None) -> nbformat.NotebookNode:
    """The released notebook with the solution's answers; ``overrides`` replace some (None: left blank)."""
    nb = copy.deepcopy(released(assignment))
    solution = answers(assignment)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solution and cell.metadata.nbgrader.get("solution"):
            source = overrides.get(grade_id, solution[grade_id])
            if source is not None:
                cell.source = source
    return nb


def submit(course: Path, student: str, assignment: str, files: dict[str, bytes] | nbformat.NotebookNode) -> Path:
    folder = course / "submitted" / student / assignment
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if isinstance(files, nbformat.NotebookNode):
        files = {f"{assignment}.ipynb": nbformat.writes(files).encode()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def course(folder: Path, *args: str, timeout: int = 900,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``course --course FOLDER ARGS...`` (``env``: variables to add, e.g. JUPYTER_CONFIG_DIR)."""
    env = venv_env({**os.environ, **(env or {})})
    env.pop("NBGRADER_EXECUTION", None)
    return subprocess.run([sys.executable, "-m", "course_grader.command.cli", "--course", str(folder), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def latest_report(folder: Path) -> dict[str, dict]:
    """The newest report's rows, by student."""
    path = max((folder / "reports").glob("grade-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return {row["student"]: row for row in json.loads(path.read_text())}


def grades(folder: Path, assignment: str, db_url: str | None = None) -> dict[str, dict[str, float | None]]:
    """student -> {test cell: auto score} from the course's gradebook (its SQLite file, or ``db_url``)."""
    from nbgrader.api import Gradebook
    with Gradebook(db_url or f"sqlite:///{folder / 'gradebook.db'}") as gb:
        return {s.student_id: {g.name: g.auto_score for nb in s.notebooks for g in nb.grades}
                for s in gb.find_assignment(assignment).submissions}
