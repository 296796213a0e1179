"""One term through nbgrader's exchange: release, fetch, a corrected release taken with
``course update`` (answers kept), submit, collect, ``course grade``, release and fetch the
feedback, with two students and an instructor.

Each student has a home folder of their own and is named to nbgrader by ``--student``, which
nbgrader's submit and fetch_feedback take in place of the login name (on a hub, the login is
the student's own); they run as the test's own Unix account, because the venv's interpreter
may live where other accounts cannot read it. The exchange folder is created as
nbgrader's documentation says (world-writable, so that every student can submit).
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_grader.venv import venv_env

from adversarial.cases import ASSIGNMENT, MAX
from grading_course import course, filled, grades, make_course

COURSE_ID = "transformers-course"
WRONG = "def attention(q, k, v, mask=None):\n    return q, q"


def nbgrader(cwd: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` in ``cwd``, as the instructor or as student ``user`` (its own HOME)."""
    env = venv_env()
    env.pop("NBGRADER_EXECUTION", None)
    if user:
        env["HOME"] = str(cwd)
        args = (*args, f"--student={user}") if args[0] in ("submit", "fetch_feedback") else args
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} as {user or 'the instructor'}:\n{done.stderr[-3000:]}"
    return done


def course_update(home: Path) -> str:
    """A student's ``course update ASSIGNMENT`` in their home: the corrected release, fetched."""
    env = {**venv_env(), "HOME": str(home)}
    env.pop("NBGRADER_EXECUTION", None)
    done = subprocess.run([sys.executable, "-m", "course_grader.command.cli", "update", ASSIGNMENT], cwd=home,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def correct_the_release(folder: Path) -> str:
    """The instructor fixes a prose cell in solutions/ and releases again; returns the new text."""
    source = folder / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(source, as_version=4)
    prose = next(c for c in nb.cells if c.cell_type == "markdown" and not c.metadata.get("nbgrader"))
    prose.source += "\n\n(Corrected after release.)"
    nbformat.write(nb, source)
    nbgrader(folder, "generate_assignment", ASSIGNMENT, "--force")
    nbgrader(folder, "release_assignment", ASSIGNMENT, "--force")
    return prose.source


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make test installs it)")
def test_a_term_through_the_exchange_each_student_gets_only_their_own_feedback(tmp_path):
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)     # nbgrader's docs: every user writes here
    setting = f"c.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    with open(folder / "nbgrader_config.py", "a") as config:
        config.write("\n" + setting)
    nbgrader(folder, "db", "assignment", "add", ASSIGNMENT)
    nbgrader(folder, "release_assignment", ASSIGNMENT)

    answers = {"alice": filled(ASSIGNMENT), "bob": filled(ASSIGNMENT, attention=WRONG)}
    homes = {}
    for student, answer in answers.items():
        home = homes[student] = tmp_path / "home" / student
        home.mkdir(parents=True)
        (home / "nbgrader_config.py").write_text("c = get_config()\n" + setting)
        nbgrader(home, "fetch_assignment", ASSIGNMENT, user=student)
        fetched = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        released = nbformat.read(fetched, as_version=4)
        assert [c.source for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")] != [
            c.source for c in answer.cells if c.metadata.get("nbgrader", {}).get("solution")]   # the stubs
        nbformat.write(answer, fetched)

    corrected = correct_the_release(folder)
    for student, home in homes.items():
        said = course_update(home)
        assert "answer(s) kept" in said and "before-update.ipynb" in said, said
        mine = nbformat.read(home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        assert corrected in [c.source for c in mine.cells]
        nbgrader(home, "submit", ASSIGNMENT, user=student)

    nbgrader(folder, "collect", ASSIGNMENT)
    assert sorted(p.name for p in (folder / "submitted").iterdir()) == ["alice", "bob"]
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {s: sum(cells.values()) for s, cells in grades(folder, ASSIGNMENT).items()} == {"alice": MAX, "bob": MAX - 3}
    nbgrader(folder, "release_feedback", ASSIGNMENT)

    for student, home in homes.items():
        nbgrader(home, "fetch_feedback", ASSIGNMENT, user=student)
        pages = list((home / ASSIGNMENT / "feedback").rglob("*.html"))
        assert len(pages) == 1, pages                       # their own notebook's page, and no other
        page = html.unescape(re.sub(r"<[^>]+>", "", pages[0].read_text()))   # the text a reader sees
        assert ("return q, q" in page) == (student == "bob")  # bob's wrong answer is on bob's page only
        assert f"Score: {MAX if student == 'alice' else MAX - 3}" in page.replace(".0", ""), student
