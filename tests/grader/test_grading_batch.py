"""``course grade`` on one shared scratch course: the adversarial suite, parallel = sequential,
idempotent re-grading, feedback and the report.

One sandboxed batch (2 workers, 8 s per cell) grades every submission of
tests/adversarial/cases.py next to an ordinary one ("victim", whose folder the escape case
attacks); each case must get exactly its expected score and report status. A second,
small course then grades a subset sequentially (same grades as in the batch) and again
after submissions changed or disappeared (no stale grade or file survives).
"""
from __future__ import annotations

import html
import re
import shutil

import nbformat
import pytest

from adversarial.cases import ASSIGNMENT, CASES, MAX, Context
from grading_course import ROOT, answers, course, filled, grades, latest_report, make_course, released, submit

OTHER = "02_multi_head_attention"
TIMEOUT = "8"
VICTIM = "victim"


def student(index: int, name: str) -> str:
    return f"case{index:02d}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


STUDENTS = {student(i, case.name): case for i, case in enumerate(CASES)}


@pytest.fixture(scope="module")
def sandbox_ok():
    from course_lib.grading import sandbox
    slot = sandbox.UidSlot()
    try:
        problem = sandbox.check(slot.uid, [])
    finally:
        slot.close()
    if problem:
        pytest.skip(f"no working sandbox here ({problem}); the adversarial suite needs it")


@pytest.fixture(scope="module")
def batch(sandbox_ok, tmp_path_factory):
    other_assignment = OTHER if (ROOT / "solutions" / OTHER).is_dir() else ASSIGNMENT
    folder = make_course(tmp_path_factory.mktemp("grading") / "course", [ASSIGNMENT])
    victim = submit(folder, VICTIM, ASSIGNMENT, filled(ASSIGNMENT))
    ctx = Context(released(ASSIGNMENT), answers(ASSIGNMENT), filled(other_assignment), str(folder), str(victim))
    if other_assignment == ASSIGNMENT:  # until notebook 02 exists: 01 with every grade id renamed
        for cell in ctx.other.cells:
            if "nbgrader" in cell.metadata:
                cell.metadata.nbgrader["grade_id"] = "other_" + cell.metadata.nbgrader["grade_id"]
    for name, case in STUDENTS.items():
        submit(folder, name, ASSIGNMENT, case.build(ctx))
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", TIMEOUT)
    return {"course": folder, "done": done, "report": latest_report(folder), "grades": grades(folder, ASSIGNMENT)}


@pytest.mark.parametrize("name", list(STUDENTS))
def test_adversarial_submission_gets_its_expected_score(batch, name):
    case, row = STUDENTS[name], batch["report"][name]
    assert (row["score"], row["status"]) == (case.score, case.status), f"{case.name}: {row}"
    assert case.reason in row["details"] + row["reason"], f"{case.name}: reason {row['details']!r}"
    assert "\n" not in row["reason"]


def test_batch_finishes_and_exit_status_names_what_to_check(batch):
    done = batch["done"]
    assert done.returncode == 1, done.stdout + done.stderr
    to_check = [name for name, row in batch["report"].items() if row["status"] == "check"]
    assert to_check and all(name in done.stdout for name in to_check)
    assert batch["report"][VICTIM]["score"] == MAX and batch["report"][VICTIM]["status"] == "ok"
    assert set(batch["report"]) == set(STUDENTS) | {VICTIM}


def test_nothing_escaped_the_sandbox(batch):
    folder = batch["course"]
    escape = next(n for n, c in STUDENTS.items() if c.name == "escape attempts")
    graded = nbformat.read(folder / "autograded" / escape / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.outputs)
    assert "contained []" in printed and "ESCAPED" not in printed
    assert sorted(p.name for p in (folder / "submitted" / VICTIM / ASSIGNMENT).iterdir()) == [f"{ASSIGNMENT}.ipynb"]
    assert batch["grades"][VICTIM] and all(score is not None for score in batch["grades"][VICTIM].values())


def visible_text(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_feedback_never_shows_hidden_tests(batch):
    source = nbformat.read(ROOT / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    hidden = {line.strip() for cell in source.cells if cell.cell_type == "code"
              for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S)
              for line in block.splitlines() if len(line.strip()) >= 12 and not line.strip().startswith("print(")}
    pages = list((batch["course"] / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) >= len(STUDENTS) - 3  # the unreadable notebooks get none
    for page in pages:
        text = visible_text(page.read_text())
        assert not [line for line in hidden if line in text], page
        assert "HIDDEN TESTS" not in text


def test_grades_csv_lists_every_submission(batch):
    rows = (batch["course"] / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("assignment,") and len(rows) == 1 + len(STUDENTS) + 1


def test_sequential_equals_parallel_and_regrading_leaves_nothing_stale(batch, tmp_path):
    """A subset graded again with one worker gets the batch's grades, cell by cell; then one
    submission disappears and one is fixed: grading again removes the one and updates the
    other, and every submission has exactly one row per test cell."""
    picked = [VICTIM] + [n for n, c in STUDENTS.items() if c.name in (
        "blank", "invalid json", "edited test cell, wrong answer", "os._exit")]
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    for name in picked:
        shutil.copytree(batch["course"] / "submitted" / name, folder / "submitted" / name)
    done = course(folder, "grade", ASSIGNMENT, "--workers", "1", "--timeout", TIMEOUT)
    assert done.returncode == 1, done.stderr
    sequential = grades(folder, ASSIGNMENT)
    assert sequential == {name: batch["grades"][name] for name in picked}

    gone, fixed = picked[1], picked[3]
    shutil.rmtree(folder / "submitted" / gone)
    submit(folder, fixed, ASSIGNMENT, filled(ASSIGNMENT))
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", TIMEOUT)
    again = grades(folder, ASSIGNMENT)
    assert gone not in again and gone in done.stdout
    assert not (folder / "autograded" / gone).exists() or not any((folder / "autograded" / gone).iterdir())
    assert not (folder / "feedback" / gone / ASSIGNMENT).exists()
    assert sum(score for score in again[fixed].values()) == MAX
    assert {n: g for n, g in again.items() if n != fixed} == {n: sequential[n] for n in picked if n not in (gone, fixed)}
    assert all(len(cells) == len(again[VICTIM]) for cells in again.values())
    assert latest_report(folder)[fixed]["status"] == "ok"
