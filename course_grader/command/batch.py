"""Job planning: one :class:`~course_grader.protocol.Job` per submission, carrying all a worker needs.

A job is planned without the submission's files; :func:`load` reads them just before the job
goes to a worker, so the ``course`` process holds only the submissions being graded, whatever
the class submitted.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import nbformat

from ..kernel.bindings import instructor_bindings, instructor_names
from ..protocol import Job, Result, pack
from .course import MB, Course, Refused, gradebook_template, read_submission, submission_files


def make_jobs(course: Course, pairs: list[tuple[str, str]], **settings) -> list[Job]:
    template = gradebook_template(course, sorted({a for a, _ in pairs}))
    jobs = []
    for assignment, student in pairs:
        source = course.root / "solutions" / assignment
        release = {k: v for k, v in pack(course.root / "notebooks" / assignment).items()
                   if k.endswith(".ipynb") and "checkpoint" not in k}
        released = [nbformat.read(course.root / "notebooks" / assignment / name, as_version=4) for name in release]
        bindings = {k: v for nb in released for k, v in instructor_bindings(nb).items()}
        names = sorted({name for nb in released for name in instructor_names(nb)})
        source_files = {k: v for k, v in pack(source).items() if not k.endswith(".ipynb") and "checkpoint" not in k}
        jobs.append(Job(assignment, student, {}, template,
                        course.config_files, source_files=source_files, release_files=release, bindings=bindings,
                        instructor_names=names, **settings))
    return jobs


def fingerprint(course: Course, job: Job) -> str:
    """What grading this job depends on: the submission, the settings, the configuration, the
    release and the assignment's source notebooks (its hidden tests). Equal fingerprints,
    equal grades."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in asdict(job).items() if k != "gradebook"},
                                       sort_keys=True).encode())
    folder = _submitted(course, job)
    for name, _ in submission_files(folder):
        digest.update(f"\0{name}\0".encode())
        with open(folder / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(MB), b""):
                digest.update(chunk)
    for path in sorted((course.root / "solutions" / job.assignment).glob("*.ipynb")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _submitted(course: Course, job: Job):
    return course.root / "submitted" / job.student / job.assignment


def load(course: Course, job: Job) -> Job | Result:
    """The job with its submission's files, or a Result saying why they could not be read."""
    try:
        return replace(job, submission=read_submission(_submitted(course, job)))
    except (Refused, OSError) as error:
        return Result(job.assignment, job.student, error=f"not graded: {error}")
