"""A grading batch: plan the jobs, run them on workers, merge the results with one writer.

Workers (course_lib.grading.worker) grade in parallel and never touch the course's
gradebook; this process is its only writer. A result replaces everything an earlier run
left for that submission (gradebook rows, autograded/ and feedback/ folders), so grading
again gives the same state as grading once, whatever the order in which workers finish.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import cached_property
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import nbformat

from .bindings import instructor_bindings
from .worker import Job, Result, one_line, pack, unpack


@dataclass
class Course:
    root: Path

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    @cached_property
    def db_url(self) -> str:
        """nbgrader_config.py's ``CourseDirectory.db_url`` (e.g. PostgreSQL), else gradebook.db."""
        from traitlets.config.loader import PyFileConfigLoader
        config = PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()
        return config.CourseDirectory.get("db_url") or f"sqlite:///{self.gradebook}"

    def submissions(self, assignment: str | None = None, student: str | None = None) -> list[tuple[str, str]]:
        """(assignment, student) pairs found in submitted/, sorted."""
        found = []
        for folder in sorted((self.root / "submitted").glob("*/*")):
            if folder.is_dir() and not folder.name.startswith(".") and not folder.parent.name.startswith("."):
                if (assignment in (None, folder.name)) and (student in (None, folder.parent.name)):
                    found.append((folder.name, folder.parent.name))
        return found

    def assignments(self) -> list[str]:
        return sorted(p.name for p in (self.root / "solutions").iterdir() if p.is_dir() and p.name[:2].isdigit())


def ensure_in_gradebook(course: Course, assignment: str) -> None:
    """Autograde needs the assignment's cells (hidden tests included) in the gradebook:
    generate them when missing, into a scratch release (notebooks/ is left alone)."""
    from nbgrader.api import Gradebook, MissingEntry
    notebooks = [p.stem for p in (course.root / "solutions" / assignment).glob("*.ipynb")]
    with Gradebook(course.db_url) as gb:
        try:
            for name in notebooks:
                gb.find_notebook(name, assignment)
            return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory() as release:
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
                               f"--CourseDirectory.release_directory={release}"],
                              cwd=course.root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed: {one_line(done.stderr)}")


def gradebook_template(course: Course, assignments: Iterable[str]) -> str:
    """A fresh SQLite gradebook (base64) holding only the assignments' notebooks and cells
    (hidden tests included): all a worker needs, and no one's grades."""
    from nbgrader.api import Gradebook
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gradebook.db"
        with Gradebook(course.db_url) as source, Gradebook(f"sqlite:///{path}", source.course_id) as copy:
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


def make_jobs(course: Course, pairs: list[tuple[str, str]], **settings) -> list[Job]:
    config = (course.root / "nbgrader_config.py").read_text()
    template = gradebook_template(course, sorted({a for a, _ in pairs}))
    jobs = []
    for assignment, student in pairs:
        source = course.root / "solutions" / assignment
        released = [nbformat.read(p, as_version=4) for p in sorted((course.root / "notebooks" / assignment).glob("*.ipynb"))]
        bindings = {k: v for nb in released for k, v in instructor_bindings(nb).items()}
        source_files = {k: v for k, v in pack(source).items() if not k.endswith(".ipynb") and "checkpoint" not in k}
        jobs.append(Job(assignment, student, pack(course.root / "submitted" / student / assignment), template,
                        config, source_files=source_files, bindings=bindings, **settings))
    return jobs


class WorkerProcess:
    """One ``python -m course_lib.grading.worker`` process, restarted when it dies."""

    def __init__(self, log: Path, scratch: Path):
        self.log, self.scratch = log, scratch
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "course_lib.grading.worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         start_new_session=True, env=dict(os.environ, TMPDIR=str(self.scratch)))
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _read(stdout, lines: queue.Queue) -> None:
        """Results (one JSON line each) into ``lines``; None when the process has gone."""
        for line in stdout:
            lines.put(line)
        lines.put(None)

    def run(self, job: Job, limit: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.lines = queue.Queue()
            self._start()
        try:
            self.proc.stdin.write(json.dumps(asdict(job)) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=limit)
        except (BrokenPipeError, queue.Empty) as error:
            line = None
            reason = f"grading took longer than {limit:.0f} s" if isinstance(error, queue.Empty) else "worker gone"
        else:
            reason = "the grading process died"
        if line is None:
            self.close(now=True)
            return asdict(Result(job.assignment, job.student, error=f"grading process crashed: {reason}"))
        return json.loads(line)

    def close(self, now: bool = False) -> None:
        """End the worker: at once (its kernel dies with it: bwrap --die-with-parent), or by
        closing its input so that it cleans up after itself."""
        if self.proc is not None and self.proc.poll() is None:
            if not now:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_local(jobs: list[Job], workers: int, logs: Path, limit: float) -> Iterator[dict]:
    """Results as workers finish them (any order)."""
    scratch = Path(tempfile.mkdtemp(prefix="course-batch-"))  # all workers' files: removed even if one is killed
    pool = [WorkerProcess(logs / f"worker-{i}.log", scratch) for i in range(workers)]
    free: queue.Queue = queue.Queue()
    for worker in pool:
        free.put(worker)

    def run(job: Job) -> dict:
        worker = free.get()
        try:
            return worker.run(job, limit)
        finally:
            free.put(worker)

    try:
        with ThreadPoolExecutor(max_workers=workers) as executor:
            for future in as_completed([executor.submit(run, job) for job in jobs]):
                yield future.result()
    finally:
        for worker in pool:
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)


def merge(course: Course, result: dict) -> None:
    """Write one result into the gradebook, autograded/ and feedback/, replacing any earlier one."""
    from nbgrader.api import Gradebook, MissingEntry
    assignment, student = result["assignment"], result["student"]
    with Gradebook(course.db_url) as gb:
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass
        gb.update_or_create_student(student)
        timestamp = datetime.fromisoformat(result["timestamp"]) if result.get("timestamp") else None
        submission = gb.add_submission(assignment, student, timestamp=timestamp)
        for notebook in submission.notebooks:
            data = result["notebooks"].get(notebook.name, {})
            for grade in notebook.grades:
                auto, _, needs_manual = data.get("grades", {}).get(grade.name, [None, None, True])
                grade.auto_score, grade.needs_manual_grade = auto, bool(needs_manual)
            for comment in notebook.comments:
                comment.auto_comment = data.get("comments", {}).get(comment.name)
        gb.db.commit()
    for kind in ("autograded", "feedback"):
        folder = course.root / kind / student / assignment
        shutil.rmtree(folder, ignore_errors=True)
        if result[kind]:
            unpack(result[kind], folder)


def remove_stale(course: Course, assignment: str, students: Iterable[str]) -> list[str]:
    """Submissions graded earlier whose folder is gone from submitted/: removed, named."""
    from nbgrader.api import Gradebook, MissingEntry
    keep, removed = set(students), []
    with Gradebook(course.db_url) as gb:
        try:
            graded = [s.student_id for s in gb.find_assignment(assignment).submissions]
        except MissingEntry:
            return removed
        for student in sorted(set(graded) - keep):
            gb.remove_submission(assignment, student)
            removed.append(student)
    for student in removed:
        for kind in ("autograded", "feedback"):
            shutil.rmtree(course.root / kind / student / assignment, ignore_errors=True)
    return removed


def export_csv(course: Course) -> Path:
    """grades.csv through nbgrader's own CSV export (the format instructors know)."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin
    path = course.root / "grades.csv"
    with Gradebook(course.db_url) as gb:
        CsvExportPlugin(to=str(path)).export(gb)
    return path
