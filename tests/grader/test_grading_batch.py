"""``course grade`` on one shared scratch course: the adversarial suite, parallel = sequential,
idempotent re-grading, feedback and the report.

One sandboxed batch (2 workers, CELL_TIMEOUT seconds per cell) grades every submission of
tests/grader/adversarial/cases.py next to an ordinary one ("victim", whose folder the escape
case attacks) and correct ones filed under awkward folder names; each case must get exactly
its expected score and report status. A second, small course then grades a subset
sequentially (same grades as in the batch) and again after an instructor graded by hand,
a submission came late, changed or disappeared: manual grades stay, the late penalty is
nbgrader's, unchanged submissions are not graded again unless --force, a vanished folder's
grades stay unless --prune.
"""
from __future__ import annotations

import csv
import html
import re
import shutil
from datetime import datetime

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_grader.kernel import cgroup
from course_grader.markers import HIDDEN_REGION
from course_grader.venv import venv_env

from adversarial.cases import ASSIGNMENT, CASES, CELL_TIMEOUT, FOLDERS, MAX, Context
from grading_course import ROOT, answers, course, filled, grades, latest_report, make_course, released, submit

OTHER = "02_multi_head_attention"
TIMEOUT = str(CELL_TIMEOUT)
VICTIM = "victim"


def student(index: int, name: str) -> str:
    return f"case{index:02d}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _cgroups() -> str:
    """Why no cgroup bounds a submission here ('' when one does)."""
    group, why = cgroup.create(64, 8, 1.0)
    if group:
        group.destroy()
    return why


# Cases that hold gigabytes unless a cgroup stops them are graded only where one does.
NO_CGROUP = _cgroups()
STUDENTS = {student(i, case.name): case for i, case in enumerate(CASES) if not (case.needs_cgroup and NO_CGROUP)}
SHOWN = {folder.shown: folder for folder in FOLDERS}
GRADED_FOLDERS = [folder.name for folder in FOLDERS if folder.status == "ok"]


@pytest.fixture(scope="module")
def sandbox_ok():
    from course_grader.kernel import sandbox
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
    with pytest.MonkeyPatch.context() as patch:  # there from the start, for the submission that hard-links it
        patch.setenv("PATH", venv_env()["PATH"])   # (nbgrader runs alembic to create it)
        Gradebook(f"sqlite:///{folder / 'gradebook.db'}", "transformers-course").close()
    victim = submit(folder, VICTIM, ASSIGNMENT, filled(ASSIGNMENT))
    ctx = Context(released(ASSIGNMENT), answers(ASSIGNMENT), filled(other_assignment), str(folder), str(victim))
    if other_assignment == ASSIGNMENT:  # until notebook 02 exists: 01 with every grade id renamed
        for cell in ctx.other.cells:
            if "nbgrader" in cell.metadata:
                cell.metadata.nbgrader["grade_id"] = "other_" + cell.metadata.nbgrader["grade_id"]
    for name, case in STUDENTS.items():
        submit(folder, name, ASSIGNMENT, case.build(ctx))
    for case in FOLDERS:
        if case.make:
            case.make(folder, ctx)
        else:
            submit(folder, case.name, ASSIGNMENT, ctx.filled())
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", TIMEOUT)
    return {"course": folder, "done": done, "report": latest_report(folder), "grades": grades(folder, ASSIGNMENT)}


@pytest.mark.parametrize("name", list(STUDENTS))
def test_adversarial_submission_gets_its_expected_score(batch, name):
    case, row = STUDENTS[name], batch["report"][name]
    assert (row["score"], row["status"]) == (case.score, case.status), f"{case.name}: {row}"
    assert case.reason in row["details"] + row["reason"], f"{case.name}: reason {row['details']!r}"
    assert "\n" not in row["reason"]


def test_cgroup_bounds_each_submission_where_the_host_has_them(batch):
    if NO_CGROUP:
        pytest.skip(f"no cgroup here ({NO_CGROUP}): the memory bound is per process, the report says so")
    limits = next(line for line in batch["done"].stdout.splitlines() if line.startswith("Limits:"))
    assert "for each submission as a whole (cgroup v" in limits and "MB of memory" in limits


def test_batch_finishes_and_exit_status_names_what_to_check(batch):
    done = batch["done"]
    assert done.returncode == 1, done.stdout + done.stderr
    to_check = [name for name, row in batch["report"].items() if row["status"] == "check"]
    assert to_check and all(name in done.stdout for name in to_check)
    assert batch["report"][VICTIM]["score"] == MAX and batch["report"][VICTIM]["status"] == "ok"
    assert set(batch["report"]) == set(STUDENTS) | {VICTIM} | set(SHOWN)


@pytest.mark.parametrize("shown", list(SHOWN))
def test_any_folder_is_graded_or_refused_in_its_own_row(batch, shown):
    """Odd names and links: graded under their names, or refused with the reason in their own row."""
    case, row = SHOWN[shown], batch["report"][shown]
    assert (row["score"], row["status"]) == (case.score, case.status) and case.reason in row["reason"], row
    if case.status == "ok":
        assert sum(batch["grades"][case.name].values()) == MAX
    else:
        assert case.name not in batch["grades"]
        assert not (batch["course"] / "feedback" / case.name).exists()


def test_reports_cannot_be_forged(batch):
    """No control character or escape sequence from a student reaches the terminal or a report file."""
    printed = batch["done"].stdout
    txt = max((batch["course"] / "reports").glob("grade-*.txt"), key=lambda p: p.stat().st_mtime_ns).read_text()
    for text in (printed, txt):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), "a control character reached a report"
        assert not re.search(r"^\s*ok\s+01_attention\s+honest_partial", text, re.M)
    assert "\\x1b[1A" in txt


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
              for block in HIDDEN_REGION.findall(cell.source)
              for line in block.splitlines() if len(line.strip()) >= 12 and not line.strip().startswith("print(")}
    pages = list((batch["course"] / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) >= len(STUDENTS) - 3  # the unreadable notebooks get none
    for page in pages:
        text = visible_text(page.read_text())
        assert not [line for line in hidden if line in text], page
        assert "HIDDEN TESTS" not in text


def test_autograded_notebooks_and_feedback_stay_within_their_size(batch):
    """The stated bound: 8 MB of outputs per notebook on top of the submitted source, 10 MB in all."""
    written = [*(batch["course"] / "autograded").rglob("*.ipynb"), *(batch["course"] / "feedback").rglob("*.html")]
    assert written and max(path.stat().st_size for path in written) < 10 * 2**20


def test_grades_csv_lists_every_submission_with_its_true_score(batch):
    with open(batch["course"] / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["student_id"] for row in rows].count(VICTIM) == 1
    assert sorted(row["student_id"] for row in rows) == sorted([*STUDENTS, VICTIM, *GRADED_FOLDERS])
    for row in rows:
        true_score = sum(score or 0 for score in batch["grades"][row["student_id"]].values())
        assert None not in row and float(row["score"]) == true_score, row


def test_sequential_equals_parallel_and_regrading_keeps_what_nbgrader_keeps(batch, tmp_path):
    """A subset graded again with one worker gets the batch's grades, cell by cell. Then the
    instructor grades by hand, a submission is fixed, another comes late (the configuration,
    read from Jupyter's config path as nbgrader reads it, penalises late work) and one
    disappears: grading again keeps the manual grades and the vanished one, applies the
    penalty, and skips what did not change; --prune and --force do what they say."""
    picked = [VICTIM] + [n for n, c in STUDENTS.items() if c.name in (
        "blank", "invalid json", "edited test cell, wrong answer", "os._exit")]
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    for name in picked:
        shutil.copytree(batch["course"] / "submitted" / name, folder / "submitted" / name)
    done = course(folder, "grade", ASSIGNMENT, "--workers", "1", "--timeout", TIMEOUT)
    assert done.returncode == 1, done.stderr
    sequential = grades(folder, ASSIGNMENT)
    assert sequential == {name: batch["grades"][name] for name in picked}

    db = f"sqlite:///{folder / 'gradebook.db'}"
    with Gradebook(db) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime(2026, 1, 1))
        grade = gb.find_grade("test_attention", ASSIGNMENT, ASSIGNMENT, VICTIM)
        grade.manual_score, grade.extra_credit = 1.5, 0.5
        gb.find_comment("attention", ASSIGNMENT, ASSIGNMENT, VICTIM).manual_comment = "see me"
        gb.db.commit()
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "nbgrader_config.py").write_text('c = get_config()\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    (folder / "submitted" / VICTIM / ASSIGNMENT / "timestamp.txt").write_text("2026-02-01 10:00:00 UTC")
    gone, fixed = picked[1], picked[3]
    shutil.rmtree(folder / "submitted" / gone)
    submit(folder, fixed, ASSIGNMENT, filled(ASSIGNMENT))
    env = {"JUPYTER_CONFIG_DIR": str(config_dir)}
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", TIMEOUT, env=env)
    again = grades(folder, ASSIGNMENT)
    assert again[gone] == sequential[gone] and "folder gone from submitted/" in latest_report(folder)[gone]["reason"]
    assert sum(score for score in again[fixed].values()) == MAX and latest_report(folder)[fixed]["status"] == "ok"
    assert {n: g for n, g in again.items() if n != fixed} == {n: sequential[n] for n in picked if n != fixed}
    with Gradebook(db) as gb:
        grade = gb.find_grade("test_attention", ASSIGNMENT, ASSIGNMENT, VICTIM)
        assert (grade.manual_score, grade.extra_credit, grade.needs_manual_grade) == (1.5, 0.5, True)
        assert gb.find_comment("attention", ASSIGNMENT, ASSIGNMENT, VICTIM).manual_comment == "see me"
        late = gb.find_submission(ASSIGNMENT, VICTIM)
        assert late.total_seconds_late > 0 and late.late_submission_penalty == late.score > 0

    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", TIMEOUT, env=env)
    report = latest_report(folder)
    assert "unchanged since it was graded" in report[VICTIM]["reason"] and report[VICTIM]["status"] == "ok"
    assert "unchanged" in report[fixed]["reason"] and grades(folder, ASSIGNMENT) == again

    done = course(folder, "grade", ASSIGNMENT, "--prune", "--workers", "2", "--timeout", TIMEOUT, env=env)
    assert gone not in grades(folder, ASSIGNMENT) and "removed (--prune)" in latest_report(folder)[gone]["reason"]
    assert not (folder / "feedback" / gone / ASSIGNMENT).exists()

    done = course(folder, "grade", ASSIGNMENT, "--student", VICTIM, "--force", "--timeout", TIMEOUT, env=env)
    assert "unchanged" not in latest_report(folder)[VICTIM]["reason"], done.stdout
    with Gradebook(db) as gb:
        assert gb.find_grade("test_attention", ASSIGNMENT, ASSIGNMENT, VICTIM).manual_score == 1.5
