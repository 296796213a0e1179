"""grades.csv as nbgrader's CsvExportPlugin writes it (same columns, rows and values), but safe
to open: nbgrader joins the fields with commas unquoted, so a student id holding a comma
shifts the columns and one holding a newline adds a row. Here every row goes through the
csv module (quoted where needed) and text a spreadsheet would evaluate as a formula is
neutralised. nbgrader_config.py makes it ``nbgrader export``'s plugin too.
"""
from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin

from .report import spreadsheet_safe

KEYS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
        "raw_score", "late_submission_penalty", "score", "max_score"]


class CsvExport(CsvExportPlugin):
    """nbgrader's CSV export (its ``to``, ``student`` and ``assignment`` options), quoted and formula-safe."""

    def export(self, gradebook: Gradebook) -> None:
        students = [str(s) for s in self.student]
        assignments = [str(a) for a in self.assignment]
        with open(self.to or "grades.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(KEYS)
            for assignment in gradebook.assignments:
                if assignments and assignment.name not in assignments:
                    continue
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    writer.writerow(spreadsheet_safe(_text(value)) if isinstance(value, str) else _text(value)
                                    for value in _row(gradebook, assignment, student))


def _row(gradebook: Gradebook, assignment, student) -> list:
    """One student's values for one assignment, in KEYS' order (no submission: scores 0, as nbgrader)."""
    try:
        submission = gradebook.find_submission(assignment.name, student.id)
    except MissingEntry:
        timestamp, raw, penalty, score = "", 0.0, 0.0, 0.0
    else:
        timestamp, raw, penalty = submission.timestamp, submission.score, submission.late_submission_penalty
        score = max(0.0, submission.score - penalty)
    return [assignment.name, assignment.duedate, timestamp, student.id, student.last_name, student.first_name,
            student.email, raw, penalty, score, assignment.max_score]


def _text(value) -> str:
    """A value as nbgrader's export writes it: None as empty, anything else through str()."""
    return "" if value is None else str(value)
