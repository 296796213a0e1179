"""The per-batch report: one row per submission with its score and a one-line reason.

``ok`` means graded cleanly (the score is what its tests earned, right or wrong);
``check`` means grading had to step in (an unreadable notebook, a restored or edited test
cell, a hung or crashed kernel, truncated output, tampering) and a human should look.

Every string in a row may come from a student (a folder name, a grade id, an error message),
so a row holds it as :func:`printable` shows it: one line, no control characters or escape
sequences, whichever report (terminal, .txt, .csv, .json) it lands in; CSV cells that a
spreadsheet would read as a formula are neutralised (:func:`spreadsheet_safe`).
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import Result

if TYPE_CHECKING:
    from ..kernel.sandbox import Limits
    from .course import SubmissionLimits

# What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """``text`` as one line that shows what it holds: control characters, escape sequences and
    format characters escaped (``\\n``, ``\\x1b``, ``\\u202e``), undecodable bytes of a file name as ``\\xNN``."""
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte os.fsdecode could not decode (surrogateescape)
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def spreadsheet_safe(value):
    """A CSV cell that no spreadsheet evaluates: text starting like a formula gets a leading ``'``."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


@dataclass
class Row:
    student: str
    assignment: str
    score: float
    max_score: float
    status: str          # "ok" or "check"
    reason: str          # one line: the first reasons
    seconds: float
    details: str = ""    # every reason, "; "-separated

    def __post_init__(self) -> None:
        for name in ("student", "assignment", "status", "reason", "details"):
            setattr(self, name, printable(getattr(self, name)))


def reasons(result: Result) -> list[str]:
    """What a human should know about a result, one line each, most important first."""
    found = [result.error] if result.error else []
    foreign = [i.cell for i in result.incidents if i.kind == "foreign_cell"]
    if foreign:  # one line for them all: a whole other notebook has many
        found.append(f"{len(foreign)} cell(s) not part of this assignment, graded as ordinary cells "
                     f"({', '.join(foreign)})")
    found += [i.text for i in result.incidents if i.kind != "foreign_cell"]
    empty = [cell for nb in result.notebooks.values()
             for cell, (score, _, needs) in nb["grades"].items() if score is None or needs]
    if empty and result.success:
        found.append(f"no grade for {', '.join(empty)}")
    return list(dict.fromkeys(found))


def make_row(result: Result, score: float, max_score: float) -> Row:
    found = reasons(result)
    if found:
        reason = "; ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")
        return Row(result.student, result.assignment, score, max_score, "check", reason,
                   result.seconds, "; ".join(found))
    tests = [(s, m) for nb in result.notebooks.values() for s, m, _ in nb["grades"].values()]
    passed = sum(1 for s, m in tests if s == m)
    return Row(result.student, result.assignment, score, max_score, "ok",
               f"{passed} of {len(tests)} test cells passed", result.seconds)


def limits_line(limits: Limits, results: list[Result], cell_seconds: int | None, submission_seconds: int,
                submission: SubmissionLimits) -> str:
    """The bounds this run held every submission to, and how its memory bound was enforced
    (each worker says: a cgroup for the submission as a whole, or per-process rlimits)."""
    how = Counter(r.bounds for r in results if r.bounds)
    whole = {mode for mode in how if mode.startswith("cgroup")}
    scope = ("" if not how else "for each submission as a whole" if whole == set(how)
             else "per process" if not whole else "as a whole where a cgroup could be made, else per process")
    ways = ", ".join(f"{mode}: {n}" for mode, n in sorted(how.items()))
    cell = f"{cell_seconds} s" if cell_seconds else "Execute.timeout"
    return (f"Limits: {limits.memory_mb} MB of memory, {limits.processes} processes, {limits.cpus:g} CPU "
            f"{scope}{f' ({ways})' if ways else ''}; {limits.disk_mb} MB of /tmp (in memory); "
            f"{limits.cpu_seconds} s of CPU per process; {cell} per cell, {submission_seconds} s per submission; "
            f"notebooks up to {submission.notebook_mb} MB, a folder up to {submission.total_mb} MB.")


def summary(rows: list[Row], seconds: float, workers: int, sandboxed: bool, limits: str = "") -> str:
    look = [r for r in rows if r.status != "ok"]
    lines = [f"Graded {len(rows)} submission(s) in {seconds:.1f} s with {workers} worker(s), "
             f"{'sandboxed' if sandboxed else 'NOT sandboxed'}: {len(rows) - len(look)} ok, {len(look)} to check."]
    if limits:
        lines.append(limits)
    width = max([len(r.student) for r in rows] + [7])
    for r in sorted(rows, key=lambda r: (r.status == "ok", r.assignment, r.student)):
        lines.append(f"  {r.status:5} {r.assignment:24} {r.student:{width}} {r.score:g}/{r.max_score:g}  {r.reason}")
    return "\n".join(lines)


def write(rows: list[Row], text: str, folder: Path, label: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{label}.csv", folder / f"{label}.json", folder / f"{label}.txt"]
    with open(paths[0], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Row.__dataclass_fields__))
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in asdict(r).items()} for r in rows)
    paths[1].write_text(json.dumps([asdict(r) for r in rows], indent=1))
    paths[2].write_text(text + "\n")
    return paths
