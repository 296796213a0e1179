"""A grading worker: nbgrader's own autograde and feedback for one submission at a time.

Each submission is graded in a scratch course of its own (its files, a gradebook holding
only the assignment, the released notebooks, the course's nbgrader configuration), so
workers share nothing and never write the course's gradebook: they return grades and files
in a Result, and the one writer (course_grader.command.course) merges them. The kernel runs
in the sandbox (course_grader.kernel) under a uid that this worker holds alone; where the
worker runs as root, each kernel is forked from the worker's prepared kernel process
(course_grader.kernel.zygote, libraries already imported) into a sandbox of its own.

In the scratch course the submission is always filed under the same student id
(:data:`STUDENT`): nbgrader reads student ids as glob patterns and strips their spaces, so
a folder named ``[ab]`` or ``bob `` would not be found under its own name; the Result
carries the real one.

Run as ``python -m course_grader.worker.worker``: reads one JSON Job per line on stdin,
writes one JSON Result per line on stdout (kernel chatter goes to stderr).
"""
from __future__ import annotations

import base64
import copy
import functools
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from .. import config as nbgrader_config
from ..kernel import cgroup, sandbox
from ..protocol import Incident, Job, Result, one_line, pack, unpack
from . import execute, preprocessors, sanitize

STUDENT = "student"
# The scratch course's folders (its own layout, whatever the course's configuration says).
FOLDERS = {"source_directory": "solutions", "release_directory": "notebooks", "submitted_directory": "submitted",
           "autograded_directory": "autograded", "feedback_directory": "feedback"}


class Worker:
    """Grades one job at a time. ``zygote_for`` (the settings its jobs will come with: limits and
    read-only paths) makes it start its prepared kernel process at once, where it runs as root; a
    worker without it (a Dask task's, which grades one job) starts each kernel in bwrap."""

    def __init__(self, zygote_for: dict | None = None):
        self.slot = sandbox.UidSlot()
        self.base = Path(tempfile.mkdtemp(prefix="course-grade-"))
        sandbox.write_kernel_spec(self.base / "jupyter")
        os.environ["JUPYTER_PATH"] = str(self.base / "jupyter")
        self._configs: dict[str, object] = {}
        self.boxes = self.base / "boxes"        # a stable folder: the zygote sees the boxes made in it
        self.boxes.mkdir()
        self.zygote: subprocess.Popen | None = None
        self._zygote_key, self._zygote_ready = "", False
        self._zygote_dir = Path(tempfile.mkdtemp(prefix="cz-", dir="/tmp"))  # a socket path must be short
        self._use_zygote = zygote_for is not None and self.slot.uid is not None
        if self._use_zygote:
            self._start_zygote(zygote_for["limits"], zygote_for["read_only"])

    def close(self) -> None:
        self._stop_zygote()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self._zygote_dir, ignore_errors=True)
        self.slot.close()

    def _start_zygote(self, limits: dict, read_only: list[str]) -> None:
        """Start the zygote for jobs with these settings; :meth:`_zygote_socket` waits for it."""
        self._stop_zygote()
        self._zygote_key = json.dumps([limits, read_only], sort_keys=True)
        policy = sandbox.Policy(str(self._zygote_dir / "box"), self.slot.uid, sandbox.Limits(**limits), read_only,
                                zygote=str(self._zygote_dir / "socket"))
        self.zygote = subprocess.Popen(sandbox.zygote_command(policy, (self.boxes, self._zygote_dir)),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def _stop_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.kill()
            self.zygote.wait()
            self.zygote, self._zygote_ready = None, False
            (self._zygote_dir / "socket").unlink(missing_ok=True)

    def _zygote_socket(self, job: Job) -> str:
        """The socket of the zygote prepared for ``job``'s settings (restarted if they changed), or
        "" where this kernel starts in bwrap on its own: no zygote for this worker, or it failed."""
        if not self._use_zygote:
            return ""
        if json.dumps([job.limits, job.read_only], sort_keys=True) != self._zygote_key:
            self._start_zygote(job.limits, job.read_only)
        if self.zygote is not None and not self._zygote_ready:
            ready, _, _ = select.select([self.zygote.stdout], [], [], 120)
            self._zygote_ready = bool(ready) and self.zygote.stdout.readline().strip() == b"ready"
            if not self._zygote_ready:
                print("course grade: the prepared kernel process did not start: each kernel starts on its own",
                      file=sys.stderr)
                self._stop_zygote()
        if self.zygote is None or self.zygote.poll() is not None:
            return ""
        return str(self._zygote_dir / "socket")

    def _config(self, job: Job, course: Path, box: Path):
        from nbgrader.converters import Autograde
        from nbgrader.preprocessors import Execute
        key = json.dumps(job.config)
        if key not in self._configs:
            self._configs[key] = nbgrader_config.load(job.config)
        config = copy.deepcopy(self._configs[key])
        config.CourseDirectory.root = str(course)
        config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
        config.CourseDirectory.directory_structure = os.path.join("{nbgrader_step}", "{student_id}", "{assignment_id}")
        for trait, folder in FOLDERS.items():
            setattr(config.CourseDirectory, trait, folder)
        steps = list(config.Autograde.get("autograde_preprocessors", Autograde.autograde_preprocessors.default()))
        config.Autograde.autograde_preprocessors = [execute.GuardedExecute if s is Execute else s for s in steps]
        config.GuardedExecute.bindings = job.bindings
        config.GuardedExecute.instructor_names = job.instructor_names
        if job.timeout:
            config.Execute.timeout = job.timeout
        if job.sandboxed:
            config.GuardedExecute.kernel_name = sandbox.KERNEL_NAME
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = str(box / "ipc" / "kernel")
            if self.slot.uid is not None:  # a kernel of the grader's own uid could unseal it
                config.GuardedExecute.ipc_dir = str(box / "ipc")
        return config

    def grade(self, job: Job) -> Result:
        start = time.monotonic()
        result = Result(job.assignment, job.student)
        course, box = self.base / "course", self.boxes / "box"
        for folder in (course, box):
            shutil.rmtree(folder, ignore_errors=True)
        course.mkdir(mode=0o700)
        submitted = course / FOLDERS["submitted_directory"] / STUDENT / job.assignment
        (course / "gradebook.db").write_bytes(base64.b64decode(job.gradebook))
        unpack(job.submission, submitted)
        unpack(job.source_files, course / FOLDERS["source_directory"] / job.assignment)
        unpack(job.release_files, course / FOLDERS["release_directory"] / job.assignment)
        sandbox.prepare_box(box, self.slot.uid)
        limits = sandbox.Limits(**job.limits)
        group, why = cgroup.create(limits.memory_mb, limits.processes, limits.cpus) if job.sandboxed else (None, "")
        result.bounds = f"cgroup v{group.version}" if group else f"rlimits only ({why})" if why else ""
        zygote = self._zygote_socket(job) if job.sandboxed else ""
        os.environ[sandbox.ENV_VAR] = sandbox.Policy(
            str(box), self.slot.uid, limits, job.read_only, group.paths if group else [], zygote).to_env()
        preprocessors.incidents.clear()
        try:
            self._grade(job, result, course, box, submitted)
        finally:
            if group:
                killed = group.oom_kills()  # read once: the count and the message agree
                if killed:
                    preprocessors.incidents.append(Incident(
                        "memory_limit", f"its processes together reached the submission's memory limit "
                                        f"({limits.memory_mb} MB): {killed} of them killed"))
                group.destroy()
            shutil.rmtree(box, ignore_errors=True)
        result.incidents = list(preprocessors.incidents)
        result.seconds = round(time.monotonic() - start, 2)
        return result

    def _grade(self, job: Job, result: Result, course: Path, box: Path, submitted: Path) -> None:
        from nbgrader.api import Gradebook
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        result.error = _check_submission(course / "gradebook.db", job.assignment, submitted)
        if result.error:
            return
        config = self._config(job, course, box)
        api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
        graded = api.autograde(job.assignment, STUDENT)
        result.success = graded["success"]
        result.log = graded.get("log", "")[-20000:]
        if not graded["success"]:
            result.error = f"autograde failed: {_exception(result.log) or one_line(graded.get('error', ''))}"
        with Gradebook(config.CourseDirectory.db_url) as gb:
            submission = next(iter(gb.find_assignment(job.assignment).submissions), None)
            if submission is not None:
                result.timestamp = submission.timestamp.isoformat() if submission.timestamp else None
                for notebook in submission.notebooks:
                    result.notebooks[notebook.name] = {
                        "grades": {g.name: [g.auto_score, g.max_score, g.needs_manual_grade] for g in notebook.grades},
                        "comments": {c.name: c.auto_comment for c in notebook.comments}}
        autograded = course / FOLDERS["autograded_directory"] / STUDENT / job.assignment
        if result.success:
            feedback = api.generate_feedback(job.assignment, STUDENT)
            if not feedback["success"]:
                preprocessors.incidents.append(
                    Incident("feedback_failed", f"feedback failed: {one_line(feedback.get('error', ''))}"))
            result.feedback = pack(course / FOLDERS["feedback_directory"] / STUDENT / job.assignment)
        if autograded.is_dir():
            for notebook in autograded.glob("*.ipynb"):
                sanitize.sanitize_notebook_file(notebook)  # the copy formgrader and Lab show the instructor
            result.autograded = pack(autograded)
        log = box / "kernel.log"
        if log.exists() and any(i.kind in ("kernel_died", "gave_up") for i in preprocessors.incidents):
            result.log += "\n[kernel log]\n" + log.read_text(errors="replace")[-4000:]


def _valid_text(value):
    """``value`` (parsed JSON) with lone surrogates replaced by U+FFFD; None if it had none."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return None
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    fixed = False
    for key, item in list(items):
        new = _valid_text(item)
        if new is not None:
            value[key], fixed = new, True
    return value if fixed else None


def _check_submission(gradebook: Path, assignment: str, folder: Path) -> str:
    """Why nbgrader cannot grade the submitted folder (empty when it can). What it can fix
    first is fixed and recorded: text that is not valid Unicode, a timestamp.txt that is no
    date; a notebook of the assignment that is missing is recorded (nbgrader gives its tests 0)."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        expected = [nb.name for nb in gb.find_assignment(assignment).notebooks]
    present = [name for name in expected if (folder / f"{name}.ipynb").is_file()]
    if not present:
        return "no notebook of this assignment in the submission (wrong file name?)"
    for name in expected:
        if name not in present:
            preprocessors.incidents.append(Incident("missing_notebook", f"{name}.ipynb is missing from the submission"))
    stamp = folder / "timestamp.txt"
    if stamp.is_file():
        try:
            parse_utc(stamp.read_text().strip())
        except Exception:  # noqa: BLE001 - dateutil raises several kinds for garbage
            stamp.unlink()
            preprocessors.incidents.append(Incident("bad_timestamp", "timestamp.txt is not a date: graded without a "
                                                                     "timestamp (no late penalty)"))
    for name in present:
        path = folder / f"{name}.ipynb"
        try:
            data = json.loads(path.read_bytes())
            fixed = _valid_text(data)
            if fixed is not None:
                path.write_text(json.dumps(fixed))
                preprocessors.incidents.append(Incident(
                    "invalid_text", f"{name}.ipynb held text that is not valid Unicode (lone surrogates): replaced "
                                    "by U+FFFD"))
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as error:  # noqa: BLE001 - whatever the reader raises, the notebook is unreadable
            return (f"{name}.ipynb is not a readable notebook (invalid JSON, empty file or broken format: "
                    f"{type(error).__name__})")
    return ""


def _exception(log: str) -> str:
    """The last exception line in nbgrader's log (its own error only says "see the above traceback")."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return next((line[:300] for line in reversed(lines) if line.split(":")[0].endswith(("Error", "Exception"))
                 and " " not in line.split(":")[0]), "")


@functools.lru_cache(maxsize=None)
def host_sandbox_problem(limits: str) -> str | None:
    """Why this machine cannot run sandboxed kernels under ``limits`` (JSON of sandbox.Limits),
    or None. What a Dask worker runs before it grades: checked once per process and limits."""
    slot = sandbox.UidSlot()
    try:
        return sandbox.check(slot.uid, sandbox.hideable([Path.home()]), sandbox.Limits(**json.loads(limits)))
    finally:
        slot.close()


def grade_isolated(job: str) -> str:
    """Grade one job (JSON) in a fresh worker process (what a Dask task runs): a crash stays there.
    A sandboxed job is refused, ungraded, on a machine whose own sandbox does not work."""
    import subprocess
    planned = Job.from_json(job)
    if planned.sandboxed and (problem := host_sandbox_problem(json.dumps(planned.limits, sort_keys=True))):
        return Result(planned.assignment, planned.student, error=f"refused by the grading worker on "
                      f"{socket.gethostname()}: no working sandbox there ({problem})").to_json()
    try:
        done = subprocess.run([sys.executable, "-m", __spec__.name], input=job + "\n", capture_output=True, text=True,
                              timeout=planned.submission_timeout)
    except subprocess.TimeoutExpired:
        return Result(planned.assignment, planned.student, error=f"grading process crashed: grading took longer "
                                                                   f"than {planned.submission_timeout} s").to_json()
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = one_line(done.stderr) if done.stderr.strip() else f"exit status {done.returncode}"
        return Result(planned.assignment, planned.student, error=f"grading process crashed: {tail}").to_json()
    return lines[-1]


def main() -> None:
    # nbgrader with SQLAlchemy 2.1 warns 'not in session' when it adds a submission; harmless.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed (the kernel's own output included) goes to stderr
    settings = os.environ.pop(sandbox.ZYGOTE_ENV, None)
    worker = Worker(json.loads(settings) if settings else None)
    try:
        for line in sys.stdin:
            job = Job.from_json(line)
            try:
                result = worker.grade(job)
            except Exception:
                failure = traceback.format_exc()
                result = Result(job.assignment, job.student, error=f"grading failed: {one_line(failure)}", log=failure)
            results.write(result.to_json() + "\n")
            results.flush()
    finally:
        worker.close()


if __name__ == "__main__":
    main()
