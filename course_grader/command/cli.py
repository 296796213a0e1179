"""The instructor's ``course`` command (installed by pyproject.toml).

    course grade [ASSIGNMENT] [--student ID] [--workers N] [--no-sandbox] [--scheduler ADDR]
    course release [ASSIGNMENT ...] [--bundle]
    course feedback ASSIGNMENT      course export

``grade`` autogrades every submission in submitted/ (or one assignment, or one student)
with nbgrader's autograde, each kernel in the sandbox, N at a time; writes feedback/,
grades.csv and a report in reports/; exits 0 when every submission was graded cleanly,
1 when some need a look (listed in the report), 2 when it could not grade at all.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from . import batch, report, sandbox

EXIT_OK, EXIT_CHECK, EXIT_ERROR = 0, 1, 2


def _sandbox_problem(course: batch.Course, limits: sandbox.Limits) -> str | None:
    hidden = [course.gradebook, course.root / "solutions", course.root / "submitted", Path.home()]
    hidden = [p for p in hidden if p.exists() and not any(p in q.parents or p == q for q in sandbox.python_paths())]
    slot = sandbox.UidSlot()
    try:
        return sandbox.check(slot.uid, hidden, limits)
    finally:
        slot.close()


def _results(jobs, args, logs: Path, limit: float):
    if args.scheduler:
        from .dask_backend import run_dask
        return run_dask(jobs, args.scheduler)
    return batch.run_local(jobs, args.workers, logs, limit)


def grade(args: argparse.Namespace) -> int:
    course = batch.Course(Path(args.course).resolve())
    known = course.assignments()
    if args.assignment and args.assignment not in known:
        print(f"course grade: no assignment {args.assignment!r} in solutions/ (known: {', '.join(known)})",
              file=sys.stderr)
        return EXIT_ERROR
    pairs = course.submissions(args.assignment, args.student)
    unknown = [(a, s) for a, s in pairs if a not in known]
    pairs = [(a, s) for a, s in pairs if a in known]
    if not pairs and not unknown:
        print("course grade: nothing to grade in submitted/")
        return EXIT_OK
    limits = sandbox.Limits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds)
    sandboxed = not args.no_sandbox
    if sandboxed:
        problem = _sandbox_problem(course, limits)
        if problem:
            print(f"course grade: refusing to grade without a working sandbox: {problem}.\n"
                  "Student code would run as you, with your files and network in reach. Fix the "
                  "sandbox, or pass --no-sandbox to grade anyway (trusted submissions only).", file=sys.stderr)
            return EXIT_ERROR
    else:
        print("course grade: WARNING: --no-sandbox: student code runs as you, unconfined.", file=sys.stderr)

    lock = _one_grader(course)
    if lock is None:
        print("course grade: another `course grade` is running on this course (one writer only)", file=sys.stderr)
        return EXIT_ERROR
    start = time.monotonic()
    for assignment in sorted({a for a, _ in pairs}):
        batch.ensure_in_gradebook(course, assignment)
    jobs = batch.make_jobs(course, pairs, sandboxed=sandboxed, limits=vars(limits), timeout=args.timeout,
                           read_only=[str(Path(p).resolve()) for p in args.read_only])
    per_cell = args.timeout or 60
    limit = per_cell * (max(_code_cells(course, a) for a, _ in pairs) + 5) + 120 if pairs else 0
    label = f"grade-{args.assignment or 'all'}-{datetime.now():%Y%m%d-%H%M%S}"
    logs = course.root / "reports" / f"{label}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for result in _results(jobs, args, logs, limit) if jobs else []:
        batch.merge(course, result)  # this process is the gradebook's only writer
        results.append(result)
        print(f"  graded {result['assignment']}/{result['student']} ({result.get('seconds', 0):.1f} s)", flush=True)
    if not args.student:
        for assignment in sorted({a for a, _ in pairs}):
            for student in batch.remove_stale(course, assignment, [s for a, s in pairs if a == assignment]):
                print(f"  removed the earlier grade of {student} for {assignment}: no longer in submitted/")
    if pairs:
        batch.export_csv(course)
    rows = _rows(course, results) + [report.Row(s, a, 0, 0, "check", "unknown assignment: not graded", 0)
                                     for a, s in unknown]
    text = report.summary(rows, time.monotonic() - start, args.workers, sandboxed)
    paths = report.write(rows, text, course.root / "reports", label)
    print(text)
    print(f"Report: {', '.join(str(p.relative_to(course.root)) for p in paths)}; grades: grades.csv; "
          "feedback: feedback/")
    return EXIT_CHECK if any(r.status != "ok" for r in rows) else EXIT_OK


def _one_grader(course: batch.Course):
    """An exclusive lock on reports/.grading.lock (held until exit), or None if another run holds it."""
    import fcntl
    (course.root / "reports").mkdir(exist_ok=True)
    handle = open(course.root / "reports" / ".grading.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _code_cells(course: batch.Course, assignment: str) -> int:
    import nbformat
    return max([sum(c.cell_type == "code" for c in nbformat.read(p, as_version=4).cells)
                for p in (course.root / "solutions" / assignment).glob("*.ipynb")] + [1])


def _rows(course: batch.Course, results: list[dict]) -> list[report.Row]:
    from nbgrader.api import Gradebook
    rows = []
    with Gradebook(course.db_url) as gb:
        for result in results:
            submission = gb.find_submission(result["assignment"], result["student"])
            rows.append(report.make_row(result, submission.score, submission.max_score))
    return rows


def _nbgrader(course: Path, *args: str) -> int:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env).returncode


def release(args: argparse.Namespace) -> int:
    course = batch.Course(Path(args.course).resolve())
    for assignment in args.assignments or course.assignments():
        if _nbgrader(course.root, "generate_assignment", assignment, "--force") != 0:
            return EXIT_ERROR
    if args.bundle:
        from .bundle import build_bundle
        path = build_bundle(course.root, Path(args.output) if args.output else None)
        print(f"student bundle: {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    # nbgrader with SQLAlchemy 2.1 warns 'not in session' when it adds a submission; harmless.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    # nbgrader runs `alembic` when it creates a gradebook: the venv's, whatever PATH says.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    parser = argparse.ArgumentParser(prog="course", description="Instructor tools of the Transformers course.")
    parser.add_argument("--course", default=".", help="the course folder (default: here)")
    commands = parser.add_subparsers(dest="command", required=True)

    g = commands.add_parser("grade", help="autograde submissions in sandboxes, write feedback, grades.csv, a report")
    g.add_argument("assignment", nargs="?", help="default: every assignment present in submitted/")
    g.add_argument("--student", help="grade only this student")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    g.add_argument("--no-sandbox", action="store_true", help="run student code unconfined (trusted work only)")
    g.add_argument("--timeout", type=int, help="seconds per cell (default: Execute.timeout of nbgrader_config.py)")
    g.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb, help="address space per process")
    g.add_argument("--cpu-seconds", type=int, default=sandbox.Limits.cpu_seconds, help="CPU time per kernel")
    g.add_argument("--read-only", action="append", default=[], metavar="PATH",
                   help="also show PATH (read-only) inside the sandbox, e.g. a data folder")
    g.add_argument("--scheduler", help="a Dask scheduler (tcp://host:port): its workers grade")
    g.set_defaults(run=grade)

    r = commands.add_parser("release", help="generate the student notebooks (and --bundle the distribution)")
    r.add_argument("assignments", nargs="*")
    r.add_argument("--bundle", action="store_true", help="also build the student distribution (a .tar.gz)")
    r.add_argument("--output", help="bundle path (default: dist/transformers-course-student.tar.gz)")
    r.set_defaults(run=release)

    f = commands.add_parser("feedback", help="nbgrader generate_feedback (course grade already does it)")
    f.add_argument("assignment")
    f.set_defaults(run=lambda a: _nbgrader(Path(a.course), "generate_feedback", a.assignment, "--force"))

    e = commands.add_parser("export", help="grades.csv from the gradebook")
    e.set_defaults(run=lambda a: print(batch.export_csv(batch.Course(Path(a.course).resolve()))) or EXIT_OK)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
