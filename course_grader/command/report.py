"""The per-batch report: one row per submission with its score and a one-line reason.

``ok`` means graded cleanly (the score is what its tests earned, right or wrong);
``check`` means grading had to step in (an unreadable notebook, a restored or edited test
cell, a hung or crashed kernel, truncated output, tampering) and a human should look.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

# nbgrader's own warnings (in the autograde log) and what they mean for the instructor.
LOG_PATTERNS = [
    (re.compile(r"Attribute 'checksum' for cell (\S+) has changed"), "test cell {} was edited: restored"),
    (re.compile(r"Attribute 'points' for cell (\S+) has changed"), "points of cell {} were changed: restored"),
    (re.compile(r"Attribute 'locked' for cell (\S+) has changed"), "cell {} was unlocked: restored"),
    (re.compile(r"Attribute 'cell_type' for cell (\S+) has changed"), "type of cell {} was changed: restored"),
    (re.compile(r"Cell with id '(\S+)' exists multiple times"), "cell {} was duplicated: graded once"),
    (re.compile(r"No submitted file: .*/([^/]+\.ipynb)"), "{} is missing from the submission"),
]
FOREIGN = re.compile(r"cell id '(.*)' is not part of this assignment")
ERRORS = [
    (("NotJSONError", "JSONDecodeError", "does not appear to be JSON", "Expecting value", "Unterminated string",
      "NBFormatError", "ValidationError"), "not a readable notebook (invalid JSON, empty file or broken format)"),
    (("No notebooks found",), "no notebook of this assignment in the submission (wrong file name?)"),
]


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


def reasons(result: dict) -> list[str]:
    found, log = [], result.get("log", "")
    if result.get("error"):
        error = result["error"]  # nbgrader's own says "see the above traceback": the log has it
        found.append(next((text for keys, text in ERRORS if any(k in error or k in log for k in keys)),
                          error if error.startswith("grading process") else f"autograde failed: {error}"))
    for pattern, text in LOG_PATTERNS:
        for name in dict.fromkeys(pattern.findall(log)):
            found.append(text.format(name))
    foreign = [i for i in result.get("incidents", []) if FOREIGN.match(i)]
    if foreign:
        names = ", ".join(FOREIGN.match(i).group(1) for i in foreign)
        found.append(f"{len(foreign)} cell(s) not part of this assignment, graded as ordinary cells ({names})")
    found += [i for i in result.get("incidents", []) if not FOREIGN.match(i)]
    empty = [cell for nb in result.get("notebooks", {}).values()
             for cell, (score, _, needs) in nb["grades"].items() if score is None or needs]
    if empty and result.get("success"):
        found.append(f"no grade for {', '.join(empty)}")
    return list(dict.fromkeys(found))


def make_row(result: dict, score: float, max_score: float) -> Row:
    found = reasons(result)
    if found:
        reason = "; ".join(found[:3]) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")
        return Row(result["student"], result["assignment"], score, max_score, "check", reason,
                   result.get("seconds", 0), "; ".join(found))
    tests = [(s, m) for nb in result["notebooks"].values() for s, m, _ in nb["grades"].values()]
    passed = sum(1 for s, m in tests if s == m)
    return Row(result["student"], result["assignment"], score, max_score, "ok",
               f"{passed} of {len(tests)} test cells passed", result.get("seconds", 0))


def summary(rows: list[Row], seconds: float, workers: int, sandboxed: bool) -> str:
    look = [r for r in rows if r.status != "ok"]
    lines = [f"Graded {len(rows)} submission(s) in {seconds:.1f} s with {workers} worker(s), "
             f"{'sandboxed' if sandboxed else 'NOT sandboxed'}: {len(rows) - len(look)} ok, {len(look)} to check."]
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
        writer.writerows(asdict(r) for r in rows)
    paths[1].write_text(json.dumps([asdict(r) for r in rows], indent=1))
    paths[2].write_text(text + "\n")
    return paths
