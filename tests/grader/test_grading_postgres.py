"""The gradebook in a real PostgreSQL server: ``db_url = "postgresql://..."`` in nbgrader_config.py.

A server is started for the module from Debian's ``postgresql`` package (``initdb`` into a
temporary folder, a private port on 127.0.0.1, trust authentication for one role, stopped at
the end). Without the package or the driver (``psycopg``, in ``.[grader]``) the test skips
and says which is missing.
"""
from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from adversarial.cases import ASSIGNMENT, MAX
from grading_course import answers, course, filled, grades, make_course, submit


def _postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None,
                                          key=lambda p: int(Path(p).parts[-3]))
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install -e '.[grader]' installs psycopg")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql package; make test installs it as root)")
    folder = Path(tempfile.mkdtemp(prefix="course-postgres-"))
    as_owner = []
    if os.geteuid() == 0:   # initdb refuses to run as root: the server runs as the package's postgres user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root, and there is no postgres user to run the server as")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    port, data = _free_port(), folder / "data"
    run = lambda *args: subprocess.run(as_owner + [str(a) for a in args], check=True, capture_output=True, text=True)
    run(bindir / "initdb", "-D", data, "-U", "grader", "--auth=trust", "-E", "UTF8")
    run(bindir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "grader", "transformers_course")
        yield f"postgresql://grader@127.0.0.1:{port}/transformers_course"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make test installs it)")
def test_a_postgresql_gradebook_merges_regrades_and_keeps_manual_grades(postgres_url, tmp_path):
    """Two workers' results merged into the server's gradebook; a manual grade entered through
    nbgrader's API survives a regrade; the export lists what the gradebook holds."""
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    with open(folder / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.CourseDirectory.db_url = {postgres_url!r}\n")
    wrong = "def attention(q, k, v, mask=None):\n    return q, q"
    submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
    submit(folder, "bob", ASSIGNMENT, filled(ASSIGNMENT, attention=wrong))
    submit(folder, "carol", ASSIGNMENT, filled(ASSIGNMENT, **dict.fromkeys(answers(ASSIGNMENT))))  # blank
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    totals = lambda: {name: sum(score or 0 for score in cells.values())
                      for name, cells in grades(folder, ASSIGNMENT, postgres_url).items()}
    assert totals() == {"alice": MAX, "bob": MAX - 3, "carol": 0}
    assert not (folder / "gradebook.db").exists()   # nothing went to a SQLite file beside it

    with Gradebook(postgres_url, "transformers-course") as gb:
        grade = gb.find_grade("test_attention", ASSIGNMENT, ASSIGNMENT, "bob")
        grade.manual_score = 2.0
        gb.find_comment("attention", ASSIGNMENT, ASSIGNMENT, "bob").manual_comment = "close: return the weights too"
        gb.db.commit()
    submit(folder, "carol", ASSIGNMENT, filled(ASSIGNMENT))   # carol hands in again
    done = course(folder, "grade", ASSIGNMENT, "--workers", "2", "--force", "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert totals() == {"alice": MAX, "bob": MAX - 3, "carol": MAX}
    with Gradebook(postgres_url, "transformers-course") as gb:
        grade = gb.find_grade("test_attention", ASSIGNMENT, ASSIGNMENT, "bob")
        assert (grade.manual_score, grade.auto_score) == (2.0, 0.0)
        assert gb.find_comment("attention", ASSIGNMENT, ASSIGNMENT, "bob").manual_comment.startswith("close")
        expected = {s.student.id: s.score for s in gb.find_assignment(ASSIGNMENT).submissions}

    done = course(folder, "export")
    assert done.returncode == 0, done.stdout + done.stderr
    with open(folder / "grades.csv", newline="") as exported:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(exported)}
    assert rows == expected and rows["bob"] == MAX - 3 + 2.0
