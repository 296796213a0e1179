"""The nbgrader round trip for every assignment in solutions/.

For each assignment, in a scratch course directory: generate the student version, submit
the filled-in solution, the untouched student version and the typical wrong submissions of
roundtrip_cases.py, autograde them, generate feedback and export grades; then check the
grades, the feedback and that the committed notebooks/ equals what nbgrader generates.

Each autograde run executes a whole notebook, so wrong cases that edit different cells and
whose failing test cells are disjoint share one submission: its lost cells must then be
exactly the union, and each case's own cells still tell whether that case lost its points.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from roundtrip_cases import WRONG_SUBMISSIONS

ROOT = Path(__file__).resolve().parents[1]
# ROUNDTRIP_ONLY=02_multi_head_attention limits a run to one assignment while writing it.
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir()
                     if p.is_dir() and p.name[:2].isdigit() and p.name.startswith(os.environ.get("ROUNDTRIP_ONLY", "")))
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def nbgrader(course: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("NBGRADER_EXECUTION", None)
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def solution_sources(assignment: str) -> dict[str, str]:
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {c.metadata.nbgrader["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def filled(released: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The released notebook with each answer cell holding the solution, as a student would write it."""
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = "\n".join(l for l in answers[grade_id].splitlines() if l.strip() not in MARKERS)
    return nb


def group_cases(cases: list) -> list[list[int]]:
    """Indices of the cases, grouped so that no two in a group share an edited cell or a failing cell."""
    groups: list[list[int]] = []
    for i, case in enumerate(cases):
        for group in groups:
            if all(cases[j].cell != case.cell and not cases[j].fails & case.fails for j in group):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def grade_assignment(assignment: str, base: Path) -> dict:
    course = base / assignment
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
    nbgrader(course, "generate_assignment", assignment)
    released_path = course / "notebooks" / assignment / f"{assignment}.ipynb"
    released = nbformat.read(released_path, as_version=4)
    answers = solution_sources(assignment)

    submissions = {"solution": filled(released, answers), "blank": released}
    cases = WRONG_SUBMISSIONS.get(assignment, [])
    student_of_case = {}
    for g, group in enumerate(group_cases(cases)):
        wrong = dict(answers)
        for i in group:
            case = cases[i]
            assert case.old in answers[case.cell], f"{case.name}: {case.old!r} not in the solution of {case.cell}"
            wrong[case.cell] = answers[case.cell].replace(case.old, case.new)
            student_of_case[i] = f"wrong{g}"
        submissions[f"wrong{g}"] = filled(released, wrong)
    for student, nb in submissions.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")

    log = nbgrader(course, "autograde", assignment)
    nbgrader(course, "generate_feedback", assignment)
    nbgrader(course, "export")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grades = {student: {g.name: (g.score, g.max_score)
                            for g in gb.find_submission_notebook(assignment, assignment, student).grades}
                  for student in submissions}
    feedback = {s: (course / "feedback" / s / assignment / f"{assignment}.html").read_text() for s in submissions}
    return {"course": course, "released": released_path, "log": log, "grades": grades, "feedback": feedback,
            "student_of_case": student_of_case}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("courses")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda a: grade_assignment(a, base), ASSIGNMENTS)
        return dict(zip(ASSIGNMENTS, results))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_release_matches_nbgrader_output(graded, assignment):
    committed = ROOT / "notebooks" / assignment / f"{assignment}.ipynb"
    assert committed.exists(), f"{committed} missing: run `make release` and commit notebooks/"
    assert json.loads(committed.read_text()) == json.loads(graded[assignment]["released"].read_text()), (
        f"notebooks/{assignment} differs from what nbgrader generates from solutions/: run `make release`")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks_and_blank_gets_zero(graded, assignment):
    grades = graded[assignment]["grades"]
    assert grades["solution"] and all(score == top for score, top in grades["solution"].values()), grades["solution"]
    assert all(score == 0 for score, _ in grades["blank"].values()), grades["blank"]


@pytest.mark.parametrize("assignment,index", [(a, i) for a in ASSIGNMENTS for i in range(len(WRONG_SUBMISSIONS.get(a, [])))])
def test_wrong_submission_loses_exactly_its_rubric(graded, assignment, index):
    case = WRONG_SUBMISSIONS[assignment][index]
    student = graded[assignment]["student_of_case"][index]
    grades = graded[assignment]["grades"][student]
    assert case.fails <= grades.keys(), f"{case.name}: unknown test cells {case.fails - grades.keys()}"
    lost = {cell for cell, (score, top) in grades.items() if score != top}
    assert case.fails <= lost, f"{case.name}: expected to lose {sorted(case.fails)}, kept {sorted(case.fails - lost)}"
    assert all(grades[cell][0] == 0 for cell in case.fails)
    expected = set().union(*(c.fails for i, c in enumerate(WRONG_SUBMISSIONS[assignment])
                             if graded[assignment]["student_of_case"][i] == student))
    assert lost == expected, f"submission {student} (with {case.name}) lost {sorted(lost)}, its cases imply {sorted(expected)}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_untouched_submissions_log_no_checksum_warning(graded, assignment):
    assert "has changed" not in graded[assignment]["log"], graded[assignment]["log"]


def visible_text(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_shows_no_hidden_test_source(graded, assignment):
    source = (ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    hidden_lines = {line.strip() for block in HIDDEN.findall("\n".join(
        c.source for c in nbformat.reads(source, as_version=4).cells if c.cell_type == "code"))
        for line in block.splitlines() if len(line.strip()) >= 12}
    assert hidden_lines, "every assignment has hidden tests"
    for student, page in graded[assignment]["feedback"].items():
        text = visible_text(page)
        leaked = [line for line in hidden_lines if line in text]
        assert not leaked, f"feedback of {student} shows hidden test lines: {leaked[:3]}"
        assert "HIDDEN TESTS" not in text


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_carries_quiz_explanations(graded, assignment):
    text = visible_text(graded[assignment]["feedback"]["blank"])
    source = (ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    assert source.count("Explanation:") == text.count("Explanation:") > 0
