"""One term through nbgrader's exchange: release, fetch, a corrected release taken with
``course update`` (answers kept), submit, collect, ``course grade``, release and fetch the
feedback, with two students and an instructor.

Each student is a Unix account of their own (uid, home folder, name in /etc/passwd), as on a
hub: nbgrader names them by their login, and the exchange's permissions are the ones nbgrader
sets, checked by the kernel for real. They run in a bubblewrap view of this machine where the
instructor's folders are out of sight and only the Python, their home and the exchange are
shown: the venv's interpreter may live under /root, which other accounts cannot enter. The
exchange folder is created as nbgrader's documentation says (world-writable, so that every
student can submit); the instructor is root.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_grader.kernel.sandbox import python_paths
from course_grader.venv import venv_env

from adversarial.cases import ASSIGNMENT, MAX
from grading_course import course, filled, grades, make_course

COURSE_ID = "transformers-course"
WRONG = "def attention(q, k, v, mask=None):\n    return q, q"


STUDENTS = {"alice": 62001, "bob": 62002}   # uids of no account here, nor of the grader's sandbox


def as_student(student: str, home: Path, exchange: Path) -> list[str]:
    """The command prefix that runs what follows as ``student`` (their uid, their home)."""
    uid = STUDENTS[student]
    passwd = home.parent / "passwd"       # this machine's accounts and the students'
    if not passwd.exists():
        passwd.write_text(Path("/etc/passwd").read_text() + "".join(
            f"{name}:x:{number}:{number}:{name}:{home.parent / name}:/bin/sh\n" for name, number in STUDENTS.items()))
    cmd = ["bwrap", "--die-with-parent", "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--tmpfs", "/tmp", "--tmpfs", "/root", "--ro-bind", str(passwd), "/etc/passwd"]
    for path, mode in [*((p, "--ro-bind") for p in python_paths()), (home, "--bind"), (exchange, "--bind")]:
        for parent in reversed(path.parents[:-1]):
            cmd += ["--perms", "0755", "--dir", str(parent)]     # bwrap would make them 0700
        cmd += [mode, str(path), str(path)]
    return [*cmd, "--chdir", str(home), "--setenv", "HOME", str(home), "--setenv", "USER", student,
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", "setpriv", f"--reuid={uid}",
            f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs"]


def run(cwd: Path, argv: list[str], student: str | None = None,
        exchange: Path | None = None) -> subprocess.CompletedProcess:
    """``argv`` in ``cwd``, as the instructor (this process's account) or as ``student``."""
    env = venv_env()
    env.pop("NBGRADER_EXECUTION", None)
    prefix = as_student(student, cwd, exchange) if student else []
    return subprocess.run([*prefix, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def nbgrader(cwd: Path, *args: str, student: str | None = None,
             exchange: Path | None = None) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` in ``cwd``, as the instructor or as ``student``."""
    done = run(cwd, [sys.executable, "-m", "nbgrader", *args], student, exchange)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} as {student or 'the instructor'}:\n{done.stderr[-3000:]}"
    return done


def course_update(home: Path, student: str, exchange: Path) -> str:
    """A student's ``course update ASSIGNMENT`` in their home: the corrected release, fetched."""
    done = run(home, [sys.executable, "-m", "course_grader.command.cli", "update", ASSIGNMENT], student, exchange)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def refused(student: str, home: Path, exchange: Path, folder: Path) -> str:
    """What listing ``folder`` as ``student`` raises ("" if they may list it)."""
    code = f"import os\ntry:\n    os.listdir({str(folder)!r})\nexcept OSError as e:\n    print(type(e).__name__)"
    done = run(home, [sys.executable, "-c", code], student, exchange)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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
@pytest.mark.skipif(os.geteuid() != 0, reason="students as Unix accounts of their own: the test runs them as root does")
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
        home.mkdir(parents=True, mode=0o700)
        (home / "nbgrader_config.py").write_text("c = get_config()\n" + setting)
        for path in (home, home / "nbgrader_config.py"):
            os.chown(path, STUDENTS[student], STUDENTS[student])
        nbgrader(home, "fetch_assignment", ASSIGNMENT, student=student, exchange=exchange)
        fetched = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        released = nbformat.read(fetched, as_version=4)
        assert [c.source for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")] != [
            c.source for c in answer.cells if c.metadata.get("nbgrader", {}).get("solution")]   # the stubs
        nbformat.write(answer, fetched)                    # the student's work, theirs
        os.chown(fetched, STUDENTS[student], STUDENTS[student])

    corrected = correct_the_release(folder)
    for student, home in homes.items():
        said = course_update(home, student, exchange)
        assert "answer(s) kept" in said and "before-update.ipynb" in said, said
        mine = nbformat.read(home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
        assert corrected in [c.source for c in mine.cells]
        nbgrader(home, "submit", ASSIGNMENT, student=student, exchange=exchange)
    # nbgrader's inbound folder takes everyone's submissions and shows them to no student
    assert refused("bob", homes["bob"], exchange, exchange / COURSE_ID / "inbound") == "PermissionError"
    assert {p.name.split("+")[0]: p.stat().st_uid for p in (exchange / COURSE_ID / "inbound").iterdir()} == STUDENTS

    nbgrader(folder, "collect", ASSIGNMENT)
    assert sorted(p.name for p in (folder / "submitted").iterdir()) == ["alice", "bob"]
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {s: sum(cells.values()) for s, cells in grades(folder, ASSIGNMENT).items()} == {"alice": MAX, "bob": MAX - 3}
    nbgrader(folder, "release_feedback", ASSIGNMENT)
    # ... nor does the feedback folder: each fetches only the page named by their own notebook's hash
    assert refused("alice", homes["alice"], exchange, exchange / COURSE_ID / "feedback") == "PermissionError"

    for student, home in homes.items():
        nbgrader(home, "fetch_feedback", ASSIGNMENT, student=student, exchange=exchange)
        pages = list((home / ASSIGNMENT / "feedback").rglob("*.html"))
        assert len(pages) == 1, pages                       # their own notebook's page, and no other
        page = html.unescape(re.sub(r"<[^>]+>", "", pages[0].read_text()))   # the text a reader sees
        assert ("return q, q" in page) == (student == "bob")  # bob's wrong answer is on bob's page only
        assert f"Score: {MAX if student == 'alice' else MAX - 3}" in page.replace(".0", ""), student
