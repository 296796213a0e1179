"""The instructor's ``course`` command (installed by pyproject.toml).

    course grade [ASSIGNMENT] [--student ID] [--workers N] [--force] [--prune] [--no-sandbox] [--prepared-kernels]
                 [--scheduler tls://ADDR --tls-ca F --tls-cert F]
    course release [ASSIGNMENT ...] [--bundle]
    course feedback ASSIGNMENT      course export
    course update ASSIGNMENT [--from FOLDER]      (a student's: a corrected release, answers kept)

``grade`` autogrades every submission in submitted/ (or one assignment, or one student)
with nbgrader's autograde, each kernel in the sandbox, N at a time; writes feedback/,
grades.csv and a report in reports/; exits 0 when every submission was graded cleanly,
1 when some need a look (listed in the report), 2 when it could not grade at all.
Grading again keeps what nbgrader's autograde keeps (manual scores and comments, extra
credit); a submission graded cleanly before from the same inputs is not graded again
unless ``--force``; a student whose folder is gone keeps their grades unless ``--prune``.
It reads nbgrader's whole configuration chain, as formgrader does.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from ..kernel import sandbox
from ..protocol import Job, Result, one_line
from ..student import update
from ..venv import venv_env
from . import batch, pool, report
from .course import (
    Course,
    SubmissionLimits,
    ensure_in_gradebook,
    export_csv,
    merge,
    refused,
    submission_problem,
    vanished,
)
from .report import printable

EXIT_OK, EXIT_CHECK, EXIT_ERROR = 0, 1, 2


def _sandbox_problem(course: Course, limits: sandbox.Limits) -> str | None:
    hidden = sandbox.hideable([course.gradebook, course.root / "solutions", course.root / "submitted", Path.home()])
    slot = sandbox.UidSlot()
    try:
        return sandbox.check(slot.uid, hidden, limits)
    finally:
        slot.close()


def _dask_security(args: argparse.Namespace):
    """The ``distributed.Security`` that ``--scheduler`` asks for, or a message saying why the
    address is refused. Every task carries the hidden tests: tls:// with certificates, or tcp://
    only with --insecure-tcp."""
    scheme = args.scheduler.split("://", 1)[0] if "://" in args.scheduler else "tcp"
    if scheme == "tls":
        missing = [flag for flag, value in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert)) if not value]
        if missing:
            return None, f"a tls:// scheduler needs {' and '.join(missing)} (certificate files; README: Big classes)"
        unreadable = [p for p in (args.tls_ca, args.tls_cert, args.tls_key) if p and not Path(p).is_file()]
        if unreadable:
            return None, f"no such certificate or key file: {', '.join(unreadable)}"
        try:
            from distributed import Security
        except ImportError:
            return None, "course grade --scheduler needs Dask: pip install 'dask[distributed]'"
        return Security(tls_ca_file=args.tls_ca, tls_client_cert=args.tls_cert, tls_client_key=args.tls_key,
                        require_encryption=True), None
    if scheme == "tcp":
        if not args.insecure_tcp:
            return None, (f"{args.scheduler} is unencrypted and unauthenticated, and every task carries the hidden "
                          "tests: use tls://host:port with --tls-ca and --tls-cert (README: Big classes), or "
                          "--insecure-tcp on a network only you can reach")
        print("course grade: WARNING: --insecure-tcp: tasks, hidden tests included, cross the network in plain "
              "text and anyone who reaches the scheduler can submit work to your workers", file=sys.stderr)
        return None, None
    return None, f"unsupported scheduler address {args.scheduler!r}: tls://host:port (or tcp:// with --insecure-tcp)"


def _results(course: Course, jobs, args, workers: pool.LocalPool | None, security=None):
    load = functools.partial(batch.load, course)
    if args.scheduler:
        from .dask_backend import run_dask
        return run_dask(jobs, args.scheduler, load, security)
    return workers.run(jobs, load)


def _grade_jobs(course: Course, jobs, args, workers: pool.LocalPool | None, security) -> list[Result]:
    """Every job graded and merged, in the order they finish."""
    results = []
    for result in _results(course, jobs, args, workers, security) if jobs else []:
        try:
            merge(course, result)  # this process is the gradebook's only writer
        except Exception as error:  # noqa: BLE001 - one submission's failure must not stop the batch
            result.error = f"could not be written to the gradebook ({type(error).__name__}: {one_line(str(error))})"
        results.append(result)
        print(f"  graded {result.assignment}/{printable(result.student)} ({result.seconds:.1f} s)", flush=True)
    return results


def grade(args: argparse.Namespace) -> int:
    course = Course(Path(args.course).resolve())
    known = course.assignments()
    if args.assignment and args.assignment not in known:
        print(f"course grade: no assignment {args.assignment!r} in solutions/ (known: {', '.join(known)})",
              file=sys.stderr)
        return EXIT_ERROR
    found = course.submissions(args.assignment, args.student)
    if not found:
        print("course grade: nothing to grade in submitted/")
        return EXIT_OK
    rows = [report.Row(s, a, 0, 0, "check", "unknown assignment: not graded", 0)
            for a, s in found if a not in known]
    bounds = SubmissionLimits(notebook_mb=args.max_notebook_mb, total_mb=args.max_submission_mb)
    why = {(a, s): refused(s) or submission_problem(course.root / "submitted" / s / a, bounds)
           for a, s in found if a in known}
    rows += [report.Row(s, a, 0, 0, "check", reason, 0) for (a, s), reason in why.items() if reason]
    pairs = [pair for pair, reason in why.items() if not reason]
    limits = sandbox.Limits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds, processes=args.processes,
                            cpus=args.cpus)
    security = None
    if args.scheduler:
        security, refusal = _dask_security(args)
        if refusal:
            print(f"course grade: {refusal}", file=sys.stderr)
            return EXIT_ERROR
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
    label = f"grade-{args.assignment or 'all'}-{datetime.now():%Y%m%d-%H%M%S}"
    logs = course.root / "reports" / f"{label}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    read_only = [str(Path(p).resolve()) for p in args.read_only]
    # Local workers start now: their imports and prepared kernels load while the batch is planned.
    zygote = ({sandbox.ZYGOTE_ENV: json.dumps({"limits": vars(limits), "read_only": read_only})}
              if sandboxed and args.prepared_kernels else None)
    workers = pool.LocalPool(args.workers, logs, zygote) if pairs and not args.scheduler else None
    try:
        assignments = sorted({a for a, _ in pairs})
        for assignment in assignments:
            ensure_in_gradebook(course, assignment)
        jobs = batch.make_jobs(course, pairs, sandboxed=sandboxed, limits=vars(limits), timeout=args.timeout,
                               submission_timeout=args.submission_timeout, read_only=read_only)
        fingerprints = {(job.assignment, job.student): batch.fingerprint(course, job) for job in jobs}
        unchanged = _unchanged(course, fingerprints) if not args.force else set()
        jobs = [job for job in jobs if (job.assignment, job.student) not in unchanged]
        results = _grade_jobs(course, jobs, args, workers, security)
    finally:
        if workers:
            workers.close()
    graded = _rows(course, results)
    course.remember({f"{r.assignment}/{r.student}": fingerprints[(r.assignment, r.student)] if row.status == "ok"
                     else None for r, row in zip(results, graded)})
    rows += graded + _rows_of(course, sorted(unchanged), "ok", "unchanged since it was graded: not graded again "
                                                               "(--force grades it again)")
    if not args.student:
        for assignment in assignments:
            students = [s for a, s in found if a == assignment]
            gone = vanished(course, assignment, students, prune=args.prune)
            if args.prune:
                rows += [report.Row(s, assignment, 0, 0, "ok", "folder gone from submitted/: its grades were "
                                                                "removed (--prune)", 0) for s in gone]
            else:
                rows += _rows_of(course, [(assignment, s) for s in gone], "check",
                                 "folder gone from submitted/: its grades are kept (--prune removes them)")
    if pairs:
        export_csv(course)
    bounds = report.limits_line(limits, results, args.timeout, args.submission_timeout, bounds) if sandboxed else ""
    text = report.summary(rows, time.monotonic() - start, args.workers, sandboxed, bounds)
    paths = report.write(rows, text, course.root / "reports", label)
    print(text)
    print(f"Report: {', '.join(str(p.relative_to(course.root)) for p in paths)}; grades: grades.csv; "
          "feedback: feedback/")
    return EXIT_CHECK if any(r.status != "ok" for r in rows) else EXIT_OK


def _unchanged(course: Course, fingerprints: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
    """Submissions graded cleanly before from exactly the same inputs, and still in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    before = course.graded()
    same = {(a, s) for (a, s), value in fingerprints.items() if before.get(f"{a}/{s}") == value}
    with Gradebook(course.db_url, course.course_id) as gb:
        kept = set()
        for assignment, student in same:
            try:
                gb.find_submission(assignment, student)
                kept.add((assignment, student))
            except MissingEntry:
                pass
    return kept


def _one_grader(course: Course):
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


def _rows(course: Course, results: list[Result]) -> list[report.Row]:
    from nbgrader.api import Gradebook, MissingEntry
    rows = []
    with Gradebook(course.db_url, course.course_id) as gb:
        for result in results:
            try:
                submission = gb.find_submission(result.assignment, result.student)
                score, max_score = submission.score, submission.max_score
            except MissingEntry:
                score = max_score = 0
            rows.append(report.make_row(result, score, max_score))
    return rows


def _rows_of(course: Course, pairs: list[tuple[str, str]], status: str, reason: str) -> list[report.Row]:
    """Rows for submissions this run did not grade, with their scores in the gradebook."""
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url, course.course_id) as gb:
        return [report.Row(s, a, gb.find_submission(a, s).score, gb.find_submission(a, s).max_score, status, reason, 0)
                for a, s in pairs]


def _nbgrader(course: Path, *args: str) -> int:
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=venv_env()).returncode


def release(args: argparse.Namespace) -> int:
    course = Course(Path(args.course).resolve())
    for assignment in args.assignments or course.assignments():
        if _nbgrader(course.root, "generate_assignment", assignment, "--force") != 0:
            return EXIT_ERROR
    if args.bundle:
        from ..release.bundle import build_bundle
        path = build_bundle(course.root, Path(args.output) if args.output else None)
        print(f"student bundle: {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    # nbgrader with SQLAlchemy 2.1 warns 'not in session' when it adds a submission; harmless.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    # nbgrader runs `alembic` when it creates a gradebook: the venv's, whatever PATH says.
    os.environ.update(venv_env())
    parser = argparse.ArgumentParser(prog="course", description="Instructor tools of the Transformers course.")
    parser.add_argument("--course", default=".", help="the course folder (default: here)")
    commands = parser.add_subparsers(dest="command", required=True)

    g = commands.add_parser("grade", help="autograde submissions in sandboxes, write feedback, grades.csv, a report")
    g.add_argument("assignment", nargs="?", help="default: every assignment present in submitted/")
    g.add_argument("--student", help="grade only this student")
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers (default: cores)")
    g.add_argument("--no-sandbox", action="store_true", help="run student code unconfined (trusted work only)")
    g.add_argument("--timeout", type=int, help="seconds per cell (default: Execute.timeout of nbgrader_config.py)")
    g.add_argument("--submission-timeout", type=int, default=Job.submission_timeout, metavar="SECONDS",
                   help="seconds for one whole submission, every cell and the feedback (default: %(default)s)")
    g.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb,
                   help="memory of a submission as a whole (cgroup; per process where none can be made)")
    g.add_argument("--processes", type=int, default=sandbox.Limits.processes, help="processes and threads")
    g.add_argument("--cpus", type=float, default=sandbox.Limits.cpus, help="CPU share of a submission (cgroup)")
    g.add_argument("--cpu-seconds", type=int, default=sandbox.Limits.cpu_seconds, help="CPU time per process")
    g.add_argument("--max-notebook-mb", type=int, default=SubmissionLimits.notebook_mb,
                   help="a larger notebook is refused unread")
    g.add_argument("--max-submission-mb", type=int, default=SubmissionLimits.total_mb,
                   help="a submitted folder holding more is refused unread")
    g.add_argument("--read-only", action="append", default=[], metavar="PATH",
                   help="also show PATH (read-only) inside the sandbox, e.g. a data folder")
    g.add_argument("--prepared-kernels", action="store_true",
                   help="fork each kernel from a process per worker that already imported torch and the course's "
                        "libraries (each kernel still in a sandbox of its own; README: Kernels start prepared)")
    g.add_argument("--force", action="store_true",
                   help="grade again submissions that are unchanged since they were graded cleanly")
    g.add_argument("--prune", action="store_true",
                   help="remove the grades of students whose folder is gone from submitted/ (kept otherwise)")
    g.add_argument("--scheduler", help="a Dask scheduler, tls://host:port (with --tls-ca, --tls-cert): its workers "
                                       "grade, each in its own sandbox")
    g.add_argument("--tls-ca", help="the CA certificate (PEM file) that signed the cluster's certificates")
    g.add_argument("--tls-cert", help="this client's certificate (PEM file; may hold the key too)")
    g.add_argument("--tls-key", help="this client's private key (PEM file), if not in --tls-cert")
    g.add_argument("--insecure-tcp", action="store_true",
                   help="allow a tcp:// scheduler: no encryption, no authentication (a network only you can reach)")
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
    e.set_defaults(run=lambda a: print(export_csv(Course(Path(a.course).resolve()))) or EXIT_OK)

    u = commands.add_parser("update", help="(for students) take a corrected release of an assignment you started: "
                                           "your answers are kept")
    update.add_arguments(u)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
