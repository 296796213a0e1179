"""A grading worker: nbgrader's own autograde and feedback for one submission at a time.

Each submission is graded in a scratch course of its own (its files, a gradebook holding
only the assignment, the course's nbgrader configuration), so workers share nothing and
never write the course's gradebook: they return grades and files in a :class:`Result`,
and the one writer (course_lib.grading.batch) merges them. The kernel runs in the
sandbox (course_lib.grading.sandbox) under a uid that this worker holds alone.

Run as ``python -m course_lib.grading.worker``: reads one JSON :class:`Job` per line on
stdin, writes one JSON :class:`Result` per line on stdout (kernel chatter goes to stderr).
"""
from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import execute, preprocessors, sandbox


@dataclass
class Job:
    assignment: str
    student: str
    submission: dict[str, str]          # the submitted folder: relative path -> base64
    gradebook: str                      # base64 of a gradebook with the assignment and no students
    config: str                         # the course's nbgrader_config.py
    source_files: dict[str, str] = field(default_factory=dict)  # solutions/<a>/ files that are no notebooks
    sandboxed: bool = True
    limits: dict = field(default_factory=dict)
    timeout: int | None = None          # seconds per cell; None: the configured Execute.timeout
    bindings: dict[str, str] = field(default_factory=dict)
    read_only: list[str] = field(default_factory=list)


@dataclass
class Result:
    assignment: str
    student: str
    success: bool = False
    error: str = ""                     # one line, empty when autograde succeeded
    incidents: list[str] = field(default_factory=list)
    log: str = ""
    timestamp: str | None = None
    # notebook -> {"grades": {cell: [auto_score, max_score, needs_manual_grade]}, "comments": {cell: text}}
    notebooks: dict = field(default_factory=dict)
    autograded: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def pack(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): base64.b64encode(p.read_bytes()).decode()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def unpack(files: dict[str, str], folder: Path) -> None:
    for name, data in files.items():
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents:
            continue  # a name like ../../x: never written outside the folder
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


def one_line(error: str) -> str:
    """The last line of a traceback, which names what went wrong."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"


class Worker:
    def __init__(self):
        self.slot = sandbox.UidSlot()
        self.base = Path(tempfile.mkdtemp(prefix="course-grade-"))
        sandbox.write_kernel_spec(self.base / "jupyter")
        os.environ["JUPYTER_PATH"] = str(self.base / "jupyter")
        self._configs: dict[str, object] = {}

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.slot.close()

    def _config(self, job: Job, course: Path, box: Path):
        from nbgrader.converters import Autograde
        from nbgrader.preprocessors import Execute
        from traitlets.config.loader import PyFileConfigLoader
        if job.config not in self._configs:
            folder = Path(tempfile.mkdtemp(dir=self.base))
            (folder / "nbgrader_config.py").write_text(job.config)
            self._configs[job.config] = PyFileConfigLoader("nbgrader_config.py", path=str(folder)).load_config()
        config = copy.deepcopy(self._configs[job.config])
        config.CourseDirectory.root = str(course)
        config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
        steps = list(config.Autograde.get("autograde_preprocessors", Autograde.autograde_preprocessors.default()))
        config.Autograde.autograde_preprocessors = [execute.GuardedExecute if s is Execute else s for s in steps]
        config.GuardedExecute.bindings = job.bindings
        if job.timeout:
            config.Execute.timeout = job.timeout
        if job.sandboxed:
            config.GuardedExecute.kernel_name = sandbox.KERNEL_NAME
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = str(box / "ipc" / "kernel")
        return config

    def grade(self, job: Job) -> Result:
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        start = time.monotonic()
        result = Result(job.assignment, job.student)
        course, box = self.base / "course", self.base / "box"
        for folder in (course, box):
            shutil.rmtree(folder, ignore_errors=True)
        course.mkdir(mode=0o700)
        (course / "gradebook.db").write_bytes(base64.b64decode(job.gradebook))
        unpack(job.submission, course / "submitted" / job.student / job.assignment)
        unpack(job.source_files, course / "solutions" / job.assignment)
        sandbox.prepare_box(box, self.slot.uid)
        os.environ[sandbox.ENV_VAR] = sandbox.Policy(
            str(box), self.slot.uid, sandbox.Limits(**job.limits), job.read_only).to_env()
        preprocessors.incidents.clear()
        execute.incidents.clear()

        config = self._config(job, course, box)
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        graded = api.autograde(job.assignment, job.student)
        result.success = graded["success"]
        result.log = graded.get("log", "")[-20000:]
        if not graded["success"]:
            result.error = one_line(graded.get("error", ""))
        result.incidents = preprocessors.incidents + execute.incidents
        with Gradebook(config.CourseDirectory.db_url) as gb:
            try:
                submission = gb.find_submission(job.assignment, job.student)
            except MissingEntry:
                submission = None
            if submission is not None:
                result.timestamp = submission.timestamp.isoformat() if submission.timestamp else None
                for notebook in submission.notebooks:
                    result.notebooks[notebook.name] = {
                        "grades": {g.name: [g.auto_score, g.max_score, g.needs_manual_grade] for g in notebook.grades},
                        "comments": {c.name: c.auto_comment for c in notebook.comments}}
        autograded = course / "autograded" / job.student / job.assignment
        if result.success:
            feedback = api.generate_feedback(job.assignment, job.student)
            if not feedback["success"]:
                result.incidents.append(f"feedback failed: {one_line(feedback.get('error', ''))}")
            result.feedback = pack(course / "feedback" / job.student / job.assignment)
        if autograded.is_dir():
            result.autograded = pack(autograded)
        log = box / "kernel.log"
        if log.exists() and any(i.startswith("cell") and "kernel" in i for i in result.incidents):
            result.log += "\n[kernel log]\n" + log.read_text(errors="replace")[-4000:]
        shutil.rmtree(box, ignore_errors=True)
        result.seconds = round(time.monotonic() - start, 2)
        return result


def grade_isolated(job: dict) -> dict:
    """Grade one job in a fresh worker process (what a Dask task runs): a crash stays there."""
    import subprocess
    done = subprocess.run([sys.executable, "-m", "course_lib.grading.worker"], input=json.dumps(job) + "\n",
                          capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = one_line(done.stderr) if done.stderr.strip() else f"exit status {done.returncode}"
        return asdict(Result(job["assignment"], job["student"], error=f"grading process crashed: {tail}"))
    return json.loads(lines[-1])


def main() -> None:
    # nbgrader with SQLAlchemy 2.1 warns 'not in session' when it adds a submission; harmless.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (the kernel's own output included) goes to stderr
    worker = Worker()
    try:
        for line in sys.stdin:
            job = Job(**json.loads(line))
            try:
                result = worker.grade(job)
            except Exception:
                result = Result(job.assignment, job.student, error=f"grading failed: {one_line(traceback.format_exc())}",
                                log=traceback.format_exc())
            results.write(json.dumps(asdict(result)) + "\n")
            results.flush()
    finally:
        worker.close()


if __name__ == "__main__":
    main()
