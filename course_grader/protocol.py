"""What the ``course`` command and its workers exchange: jobs, results and incidents.

All are dataclasses that travel as one line of JSON each (a worker's stdin and stdout, or
a Dask task's argument and return value). Files travel inside them as base64, by
relative path; :func:`unpack` never writes outside the folder it is given.
"""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Job:
    """One submission to grade, with everything a worker needs (it reads nothing else)."""
    assignment: str
    student: str
    submission: dict[str, str]          # the submitted folder: relative path -> base64
    gradebook: str                      # base64 of a gradebook with the assignment and no students
    config: list[list[str]]             # nbgrader's configuration chain: [file name, text], lowest priority first
    source_files: dict[str, str] = field(default_factory=dict)  # solutions/<a>/ files that are no notebooks
    release_files: dict[str, str] = field(default_factory=dict)  # notebooks/<a>/*.ipynb: locked cells' metadata
    sandboxed: bool = True
    limits: dict = field(default_factory=dict)
    timeout: int | None = None          # seconds per cell; None: the configured Execute.timeout
    submission_timeout: int = 600       # seconds for the whole submission (autograde and feedback)
    bindings: dict[str, str] = field(default_factory=dict)      # see course_grader.kernel.bindings
    instructor_names: list[str] = field(default_factory=list)
    read_only: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(**json.loads(text))


@dataclass
class Incident:
    """Something grading noticed or did to a submission (the report then asks for a look).

    ``kind`` is one of:
    ``foreign_cell``: a cell id that is not part of the assignment;
    ``missing_cell``: a test cell missing from the submission, put back;
    ``edited_cell``: a locked cell whose source was changed, restored;
    ``duplicated_cell``: a cell id present more than once, graded once;
    ``reordered``: cells out of the assignment's order, put back;
    ``metadata_restored``: a locked cell's metadata (tags, nbgrader's) changed by the student, restored;
    ``missing_notebook``: a notebook of the assignment missing from the submission;
    ``restored``: trusted objects replaced (or callbacks, builtin-shadowing names added) before a test cell, put back;
    ``tampering``: trusted objects replaced while a test ran: the test is not credited;
    ``guard_silent``: the grading guard did not answer: the test is not credited;
    ``timeout``: a cell ran past the time limit;
    ``kernel_died``: the kernel died or ignored the interrupt, restarted;
    ``gave_up``: the kernel was restarted too often: the rest was not run;
    ``output_truncated``: a cell's output was cut at the cap;
    ``feedback_failed``: nbgrader generate_feedback failed;
    ``hidden_test_quoted``: output lines quoting the hidden tests, removed from the feedback;
    ``bad_timestamp``: a timestamp.txt that is no date, ignored;
    ``invalid_text``: text that is not valid Unicode, replaced;
    ``widget_dropped``: widget state without its model module, not kept.
    """
    kind: str
    text: str       # one line for a human
    cell: str = ""  # the grade id (or "cell N") it concerns, if any


@dataclass
class Result:
    """What a worker returns for a Job: grades, files and what happened."""
    assignment: str
    student: str
    success: bool = False
    error: str = ""                     # one line a human can act on; empty when autograde succeeded
    incidents: list[Incident] = field(default_factory=list)
    log: str = ""
    timestamp: str | None = None
    # notebook -> {"grades": {cell: [auto_score, max_score, needs_manual_grade]}, "comments": {cell: text}}
    notebooks: dict = field(default_factory=dict)
    autograded: dict[str, str] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    bounds: str = ""                    # how the submission as a whole was bounded ("cgroup v1", ...)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Result":
        data = json.loads(text)
        data["incidents"] = [Incident(**i) for i in data.get("incidents", [])]
        return cls(**data)


def pack(folder: Path) -> dict[str, str]:
    """A folder's regular files (no links), relative path -> base64."""
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
