"""The round trip for every assignment in solutions/, graded by ``course grade``.

In one scratch course: nbgrader generates every student version; each assignment gets the
filled-in solution, the untouched student version and the typical wrong submissions of
roundtrip_cases.py; one ``course grade`` run (sandboxed, two workers, guard on) grades them
all, with their feedback and grades.csv. Then: the committed notebooks/ equals what nbgrader
generates; the solution gets full marks and the blank 0; each wrong case loses exactly the
points its rubric implies; every submission's report row is "ok" with nothing flagged
(no honest submission is taken for tampering) and the run exits 0; feedback shows no hidden
test and carries the quiz explanations.

Each grading runs a whole notebook, so wrong cases that edit different cells and whose
failing test cells are disjoint share one submission: its lost cells must then be exactly
the union, and each case's own cells still tell whether that case lost its points.
"""
from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_grader.command import cli
from course_grader.markers import HIDDEN_REGION, without_solution_markers
from course_grader.venv import venv_env

from roundtrip_cases import WRONG_SUBMISSIONS

ROOT = Path(__file__).resolve().parents[2]
# ROUNDTRIP_ONLY=02_multi_head_attention limits a run to one assignment while writing it.
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir()
                     if p.is_dir() and p.name[:2].isdigit() and p.name.startswith(os.environ.get("ROUNDTRIP_ONLY", "")))


def nbgrader(course: Path, *args: str) -> str:
    env = venv_env()
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
            cell.source = without_solution_markers(answers[grade_id])
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


def submit_assignment(course: Path, assignment: str) -> dict:
    """Release ``assignment`` with nbgrader and file its submissions; what the checks need of it."""
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
    return {"released": released_path, "students": list(submissions), "student_of_case": student_of_case}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("roundtrip") / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    results = {assignment: submit_assignment(course, assignment) for assignment in ASSIGNMENTS}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["--course", str(course), "grade", "--workers", "2"])
    report = json.loads(max((course / "reports").glob("grade-*.json"), key=lambda p: p.stat().st_mtime_ns).read_text())
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment, result in results.items():
            result["grades"] = {student: {g.name: (g.score, g.max_score)
                                          for g in gb.find_submission_notebook(assignment, assignment, student).grades}
                                for student in result["students"]}
            result["feedback"] = {s: (course / "feedback" / s / assignment / f"{assignment}.html").read_text()
                                  for s in result["students"]}
            result["rows"] = {row["student"]: row for row in report if row["assignment"] == assignment}
    return {"status": status, "printed": printed.getvalue(), "assignments": results}


def test_course_grade_finds_nothing_to_check(graded):
    assert graded["status"] == 0, graded["printed"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_release_matches_nbgrader_output(graded, assignment):
    committed = ROOT / "notebooks" / assignment / f"{assignment}.ipynb"
    assert committed.exists(), f"{committed} missing: run `make release` and commit notebooks/"
    assert json.loads(committed.read_text()) == json.loads(graded["assignments"][assignment]["released"].read_text()), (
        f"notebooks/{assignment} differs from what nbgrader generates from solutions/: run `make release`")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks_and_blank_gets_zero(graded, assignment):
    grades = graded["assignments"][assignment]["grades"]
    assert grades["solution"] and all(score == top for score, top in grades["solution"].values()), grades["solution"]
    assert all(score == 0 for score, _ in grades["blank"].values()), grades["blank"]


@pytest.mark.parametrize("assignment,index",
                         [(a, i) for a in ASSIGNMENTS for i in range(len(WRONG_SUBMISSIONS.get(a, [])))])
def test_wrong_submission_loses_exactly_its_rubric(graded, assignment, index):
    case = WRONG_SUBMISSIONS[assignment][index]
    result = graded["assignments"][assignment]
    student = result["student_of_case"][index]
    grades = result["grades"][student]
    assert case.fails <= grades.keys(), f"{case.name}: unknown test cells {case.fails - grades.keys()}"
    lost = {cell for cell, (score, top) in grades.items() if score != top}
    assert case.fails <= lost, f"{case.name}: expected to lose {sorted(case.fails)}, kept {sorted(case.fails - lost)}"
    assert all(grades[cell][0] == 0 for cell in case.fails)
    expected = set().union(*(c.fails for i, c in enumerate(WRONG_SUBMISSIONS[assignment])
                             if result["student_of_case"][i] == student))
    assert lost == expected, (f"submission {student} (with {case.name}) lost {sorted(lost)}, "
                              f"its cases imply {sorted(expected)}")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_no_honest_submission_is_flagged(graded, assignment):
    """Solution, blank and wrong answers alike: status ok, no incident (restored object,
    edited cell, tampering), nothing to check."""
    rows = graded["assignments"][assignment]["rows"]
    assert set(rows) == set(graded["assignments"][assignment]["students"])
    flagged = {student: row["details"] or row["reason"] for student, row in rows.items() if row["status"] != "ok"}
    assert not flagged, flagged


def visible_text(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_shows_no_hidden_test_source(graded, assignment):
    source = (ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    hidden_lines = {line.strip() for block in HIDDEN_REGION.findall("\n".join(
        c.source for c in nbformat.reads(source, as_version=4).cells if c.cell_type == "code"))
        for line in block.splitlines() if len(line.strip()) >= 12}
    assert hidden_lines, "every assignment has hidden tests"
    for student, page in graded["assignments"][assignment]["feedback"].items():
        text = visible_text(page)
        leaked = [line for line in hidden_lines if line in text]
        assert not leaked, f"feedback of {student} shows hidden test lines: {leaked[:3]}"
        assert "HIDDEN TESTS" not in text


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_carries_quiz_explanations(graded, assignment):
    text = visible_text(graded["assignments"][assignment]["feedback"]["blank"])
    source = (ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    assert source.count("Explanation:") == text.count("Explanation:") > 0
