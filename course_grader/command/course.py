"""The course as the ``course`` command sees it: its folders, its gradebook and nbgrader's configuration.

This process is the gradebook's only writer: workers (course_grader.worker) grade in
scratch courses of their own and return a :class:`~course_grader.protocol.Result`, which
:func:`merge` writes into the gradebook, autograded/ and feedback/ as nbgrader's own
autograde would: automatic scores and comments are replaced, manual scores, manual
comments and extra credit stay, and the late penalty is nbgrader's. A submission is never
removed, except on request (:func:`vanished` with ``prune``).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

from .. import config as nbgrader_config
from ..protocol import Result, one_line, unpack
from ..venv import venv_env

MB = 1024 * 1024


@dataclass
class Course:
    root: Path

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @cached_property
    def config_files(self) -> list[list[str]]:
        """nbgrader's whole configuration chain, as nbgrader reads it in this course."""
        return nbgrader_config.files(self.root)

    @cached_property
    def config(self):
        return nbgrader_config.load(self.config_files)

    @property
    def db_url(self) -> str:
        """The configured ``CourseDirectory.db_url`` (e.g. PostgreSQL), else gradebook.db."""
        return self.config.CourseDirectory.get("db_url") or f"sqlite:///{self.gradebook}"

    @property
    def course_id(self) -> str:
        return self.config.CourseDirectory.get("course_id") or "default_course"

    def submissions(self, assignment: str | None = None, student: str | None = None) -> list[tuple[str, str]]:
        """(assignment, student) pairs found in submitted/, sorted (folder names as they are)."""
        found = []
        for folder in sorted((self.root / "submitted").glob("*/*")):
            if folder.is_dir() and not folder.name.startswith(".") and not folder.parent.name.startswith("."):
                if (assignment in (None, folder.name)) and (student in (None, folder.parent.name)):
                    found.append((folder.name, folder.parent.name))
        return found

    def assignments(self) -> list[str]:
        return sorted(p.name for p in (self.root / "solutions").iterdir() if p.is_dir() and p.name[:2].isdigit())

    @property
    def graded_file(self) -> Path:
        """Fingerprints of the submissions last graded cleanly (reports/.graded.json)."""
        return self.root / "reports" / ".graded.json"

    def graded(self) -> dict[str, str]:
        """'assignment/student' -> the fingerprint of the job that graded it cleanly."""
        return json.loads(self.graded_file.read_text()) if self.graded_file.exists() else {}

    def remember(self, fingerprints: dict[str, str | None]) -> None:
        """Record (or, for None, forget) the fingerprints of submissions graded in this run."""
        graded = self.graded()
        for key, value in fingerprints.items():
            if value is None:
                graded.pop(key, None)
            else:
                graded[key] = value
        self.graded_file.parent.mkdir(parents=True, exist_ok=True)
        self.graded_file.write_text(json.dumps(graded, indent=0, sort_keys=True))


def refused(student: str) -> str:
    """Why a student folder's name cannot be a student id (empty when it can): the gradebook,
    the report and grades.csv hold text, one line per student, and nbgrader's exchange takes
    ids without ``*`` or ``+`` (``nbgrader submit`` refuses them; ``+`` separates the fields of
    its inbound file names)."""
    try:
        student.encode("utf-8")
    except UnicodeEncodeError:
        return "the folder name is not valid UTF-8: not graded (rename the folder)"
    if not student.isprintable():
        return "the folder name holds control characters (a newline, a tab, ...): not graded (rename the folder)"
    if "*" in student or "+" in student:
        return "the folder name holds '*' or '+', which nbgrader's exchange refuses in a student id: not graded"
    if not student.strip():
        return "the folder name is blank (nbgrader strips the spaces of a student id): not graded"
    return ""


@dataclass
class SubmissionLimits:
    """What one submitted folder may hold; a folder over a limit is refused before it is read."""
    notebook_mb: int = 20     # each notebook
    total_mb: int = 100       # every file together
    files: int = 1000


class Refused(Exception):
    """A submitted folder that is not graded; the message says why, for the report."""


def submission_files(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every file in a submitted folder, links and special files refused.

    A symbolic link (to solutions/, another student) or a file with more than one hard link (a
    second name of the gradebook, say) would bring the course's own files into the sandbox and
    the feedback: such a folder is refused, never followed or copied."""
    for path in (folder.parent, folder):
        if path.is_symlink():
            raise Refused(f"{path.name} is a symbolic link: not graded (links in submitted/ are refused)")
    for base, dirs, names in os.walk(folder):
        for name in sorted(dirs) + sorted(names):
            path = Path(base, name)
            shown, info = str(path.relative_to(folder)), path.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise Refused(f"{shown} is a symbolic link: not graded (links in a submission are refused)")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"{shown} is not a regular file: not graded")
            if info.st_nlink > 1:
                raise Refused(f"{shown} has {info.st_nlink} hard links (a file that also lives elsewhere): not graded "
                              "(links in a submission are refused)")
            yield shown, info


def submission_problem(folder: Path, limits: SubmissionLimits) -> str:
    """Why a submitted folder is not graded (empty when it is): links, special files, sizes;
    nothing in it is read."""
    total = count = 0
    try:
        for name, info in submission_files(folder):
            total, count = total + info.st_size, count + 1
            if name.endswith(".ipynb") and info.st_size > limits.notebook_mb * MB:
                return f"{name} is {info.st_size / MB:.0f} MB, over the {limits.notebook_mb} MB a notebook may have"
    except Refused as error:
        return str(error)
    if total > limits.total_mb * MB:
        return f"the submission holds {total / MB:.0f} MB, over the {limits.total_mb} MB it may hold"
    if count > limits.files:
        return f"the submission holds {count} files, over the {limits.files} it may hold"
    return ""


def read_submission(folder: Path) -> dict[str, str]:
    """A submitted folder's files, relative path -> base64, each opened without following links
    and checked again as opened (the folder may have changed since :func:`submission_problem`)."""
    files = {}
    for name, info in submission_files(folder):
        fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as handle:
            now = os.fstat(fd)
            if (now.st_ino, now.st_dev, now.st_nlink) != (info.st_ino, info.st_dev, 1):
                raise Refused(f"{name} changed while it was read: not graded")
            files[name] = base64.b64encode(handle.read()).decode()
    return files


def ensure_in_gradebook(course: Course, assignment: str) -> None:
    """Autograde needs the assignment's cells (hidden tests included) in the gradebook:
    generate them when missing, into a scratch release (notebooks/ is left alone)."""
    from nbgrader.api import Gradebook, MissingEntry
    notebooks = [p.stem for p in (course.root / "solutions" / assignment).glob("*.ipynb")]
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            for name in notebooks:
                gb.find_notebook(name, assignment)
            return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory() as release:
        done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                               f"--CourseDirectory.release_directory={release}"],
                              cwd=course.root, env=venv_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed: {one_line(done.stderr)}")


def gradebook_template(course: Course, assignments: Iterable[str]) -> str:
    """A fresh SQLite gradebook (base64) holding only the assignments' notebooks and cells
    (hidden tests included): all a worker needs, and no one's grades."""
    from nbgrader.api import Gradebook
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gradebook.db"
        with (Gradebook(course.db_url, course.course_id) as source,
              Gradebook(f"sqlite:///{path}", source.course_id) as copy):
            for assignment in map(source.find_assignment, assignments):
                copy.add_assignment(assignment.name, duedate=assignment.duedate)
                for notebook in assignment.notebooks:
                    where = (notebook.name, assignment.name)
                    copy.add_notebook(*where)
                    for cell in notebook.grade_cells:
                        copy.add_grade_cell(cell.name, *where, max_score=cell.max_score, cell_type=cell.cell_type)
                    for cell in notebook.solution_cells:
                        copy.add_solution_cell(cell.name, *where)
                    for cell in notebook.task_cells:
                        copy.add_task_cell(cell.name, *where, max_score=cell.max_score, cell_type=cell.cell_type)
                    for cell in notebook.source_cells:  # in notebook order: restoring cells relies on it
                        copy.add_source_cell(cell.name, *where, cell_type=cell.cell_type, locked=cell.locked,
                                             source=cell.source, checksum=cell.checksum)
        return base64.b64encode(path.read_bytes()).decode()


def merge(course: Course, result: Result) -> None:
    """Write one result into the gradebook, autograded/ and feedback/, as nbgrader's autograde does.

    The submission is updated, never removed (nbgrader's ``update_or_create_submission``):
    each grade's automatic score and each automatic comment come from the result, and a
    grade needs a manual look when it has no automatic score or was graded by hand before
    (nbgrader's SaveAutoGrades); manual scores, manual comments and extra credit stay. The
    late penalty is nbgrader's (:func:`_assign_late_penalties`).
    """
    from nbgrader.api import Gradebook
    assignment, student = result.assignment, result.student
    with Gradebook(course.db_url, course.course_id) as gb:
        gb.update_or_create_student(student)
        if result.timestamp:
            submission = gb.update_or_create_submission(assignment, student,
                                                        timestamp=datetime.fromisoformat(result.timestamp))
        else:
            submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            data = result.notebooks.get(notebook.name, {})
            for grade in notebook.grades:
                grade.auto_score = data.get("grades", {}).get(grade.name, [None])[0]
                grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            for comment in notebook.comments:
                comment.auto_comment = data.get("comments", {}).get(comment.name)
        gb.db.commit()
        _assign_late_penalties(course, gb, submission)
    for kind in ("autograded", "feedback"):
        folder = course.root / kind / student / assignment
        shutil.rmtree(folder, ignore_errors=True)
        if getattr(result, kind):
            unpack(getattr(result, kind), folder)


def _assign_late_penalties(course: Course, gb, submission) -> None:
    """nbgrader's AssignLatePenalties with the course's plugin, on the scores as merged (manual
    ones included, as when nbgrader regrades in the course's own gradebook)."""
    from nbgrader.preprocessors import AssignLatePenalties
    step = AssignLatePenalties(config=course.config)
    step.init_plugin()
    for notebook in submission.notebooks:
        gb.db.refresh(notebook)
        notebook.late_submission_penalty = None
        if submission.total_seconds_late > 0:
            penalty = step.plugin_inst.late_submission_penalty(submission.student.id, notebook.score,
                                                               submission.total_seconds_late)
            if penalty is not None:
                notebook.late_submission_penalty = step._check_late_penalty(notebook, penalty)
    gb.db.commit()


def vanished(course: Course, assignment: str, students: Iterable[str], prune: bool) -> list[str]:
    """Students graded earlier whose folder is gone from submitted/. Their grades stay, unless
    ``prune``: then their submissions (grades, manual ones included) and files are removed."""
    from nbgrader.api import Gradebook, MissingEntry
    keep = set(students)
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            gone = sorted({s.student_id for s in gb.find_assignment(assignment).submissions} - keep)
        except MissingEntry:
            return []
        if prune:
            for student in gone:
                gb.remove_submission(assignment, student)
    if prune:
        for student in gone:
            for kind in ("autograded", "feedback"):
                shutil.rmtree(course.root / kind / student / assignment, ignore_errors=True)
        course.remember({f"{assignment}/{student}": None for student in gone})
    return gone


def export_csv(course: Course) -> Path:
    """grades.csv in nbgrader's CSV export format, written by :class:`~.export.CsvExport` (quoted, no formulas)."""
    from nbgrader.api import Gradebook

    from .export import CsvExport
    path = course.root / "grades.csv"
    with Gradebook(course.db_url, course.course_id) as gb:
        CsvExport(to=str(path)).export(gb)
    return path
