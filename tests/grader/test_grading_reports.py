"""Reports, grades.csv and submitted folders, without grading anything (the batch test grades)."""
from __future__ import annotations

import csv
import json
import os

from nbgrader.api import Gradebook

from course_grader.command import report
from course_grader.command.course import SubmissionLimits, read_submission, refused, submission_problem
from course_grader.command.export import KEYS, CsvExport
from course_grader.venv import venv_env


def test_every_report_shows_student_strings_escaped(tmp_path):
    forged = "x\x1b[2K\r  ok    01_attention honest 11/11\n"
    row = report.Row(forged, "01_attention", 5, 11, "check", f"cell id {forged}", 1.0, forged)
    assert "\x1b" not in row.student + row.reason + row.details and "\\x1b[2K\\r" in row.reason
    text = report.summary([row], 1.0, 1, True)
    paths = report.write([row], text, tmp_path, "r")
    for path in paths:
        assert not any(c in path.read_text() for c in "\x1b\r"), path
    assert len(paths[2].read_text().splitlines()) == 2
    assert json.loads(paths[1].read_text())[0]["student"] == "x\\x1b[2K\\r  ok    01_attention honest 11/11\\n"
    assert report.printable(os.fsdecode(b"caf\xe9")) == "caf\\xe9" and report.printable("a\u202eb") == "a\\u202eb"


def test_report_csv_neutralises_formulas(tmp_path):
    row = report.Row("=cmd|' /C calc'!A0", "01_attention", 0, 11, "check", "-bad", 0)
    paths = report.write([row], "", tmp_path, "r")
    with open(paths[0], newline="") as handle:
        written = next(csv.DictReader(handle))
    assert written["student"] == "'=cmd|' /C calc'!A0" and written["reason"] == "'-bad"


def test_grades_csv_is_quoted_and_formula_safe(tmp_path, monkeypatch):
    """A gradebook already holding hostile ids (from before they were refused) still exports one
    row per student, in nbgrader's columns, with no formula."""
    monkeypatch.setenv("PATH", venv_env()["PATH"])  # nbgrader runs alembic to create a gradebook
    db = f"sqlite:///{tmp_path / 'gradebook.db'}"
    names = ["doe, jane", "mallory\n01_attention,,,victim,,,,11.0,0.0,11.0,11.0", "@SUM(1)", "victim"]
    with Gradebook(db) as gb:
        gb.add_assignment("01_attention")
        for name in names:
            gb.add_student(name)
        CsvExport(to=str(tmp_path / "grades.csv")).export(gb)
    with open(tmp_path / "grades.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == KEYS and all(len(r) == len(KEYS) for r in rows)
    ids = sorted(r[KEYS.index("student_id")] for r in rows[1:])
    assert ids == sorted(["doe, jane", names[1], "'@SUM(1)", "victim"])
    assert {r[KEYS.index("score")] for r in rows[1:]} == {"0.0"}


def test_student_ids_follow_nbgraders_exchange():
    assert refused("doe, jane") == "" and refused("[ab]") == ""
    assert "'*' or '+'" in refused("bob+x") and "'*' or '+'" in refused("*")
    assert "control characters" in refused("a\x1b[1A") and "blank" in refused("   ")


def test_links_and_oversized_folders_are_refused_unread(tmp_path):
    limits = SubmissionLimits(notebook_mb=1, total_mb=2, files=3)
    secret = tmp_path / "gradebook.db"
    secret.write_bytes(b"hidden tests")
    folder = tmp_path / "submitted" / "s" / "a"
    folder.mkdir(parents=True)
    (folder / "a.ipynb").write_bytes(b"{}")
    assert submission_problem(folder, limits) == "" and read_submission(folder) == {"a.ipynb": "e30="}
    os.link(secret, folder / "notes.db")
    assert "notes.db has 2 hard links" in submission_problem(folder, limits)
    (folder / "notes.db").unlink()
    (folder / "link").symlink_to(secret)
    assert "link is a symbolic link" in submission_problem(folder, limits)
    (folder / "link").unlink()
    linked = tmp_path / "submitted" / "t"
    linked.symlink_to(tmp_path / "submitted" / "s")
    assert "t is a symbolic link" in submission_problem(linked / "a", limits)
    (folder / "a.ipynb").write_bytes(b"x" * (1024 * 1024 + 1))
    assert "over the 1 MB a notebook may have" in submission_problem(folder, limits)
    (folder / "a.ipynb").write_bytes(b"{}")
    (folder / "data.bin").write_bytes(b"x" * (3 * 1024 * 1024))
    assert "over the 2 MB it may hold" in submission_problem(folder, limits)
