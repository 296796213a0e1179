"""A corrected release for a student who already started: their answers carried over by grade id.

``course update ASSIGNMENT`` (through nbgrader's exchange) or ``course update ASSIGNMENT --from
FOLDER`` (a new student bundle) builds each notebook from the new release and keeps what is the
student's:

- an answer cell (nbgrader ``solution``) the student changed keeps their source and outputs, in
  the new release's place for that grade id; one they never touched (nbgrader's checksum still
  matches) takes the new release's version, so a corrected stub arrives;
- a cell the student added (an id the new release does not have, no nbgrader role) stays after
  the cell it followed;
- everything else (prose, demos, tests, locked cells) is the new release's: that is the correction.

Nothing is lost: the old notebook is kept beside the new one (``NAME.before-update.ipynb``), and
an answer whose grade id the new release no longer has is kept as a plain cell. The report says
what was kept and what was replaced.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import compute_checksum, is_grade, is_locked, is_solution


@dataclass
class Outcome:
    """What happened to one notebook."""
    name: str
    kept: list[str] = field(default_factory=list)        # grade ids of the student's answers carried over
    refreshed: list[str] = field(default_factory=list)   # untouched answers that took the new stub
    own: int = 0                                         # cells the student added, kept
    orphaned: list[str] = field(default_factory=list)    # answers whose grade id the release dropped
    replaced: list[str] = field(default_factory=list)    # released cells the student had edited
    backup: str = ""

    def summary(self) -> str:
        parts = [f"{len(self.kept)} answer(s) kept" + (f" ({', '.join(self.kept)})" if self.kept else "")]
        if self.refreshed:
            parts.append(f"{len(self.refreshed)} untouched answer cell(s) take the new version")
        if self.own:
            parts.append(f"{self.own} cell(s) of your own kept")
        if self.orphaned:
            parts.append(f"no longer in the assignment, kept as plain cells: {', '.join(self.orphaned)}")
        if self.replaced:
            parts.append(f"{len(self.replaced)} edited course cell(s) replaced by the corrected version")
        return f"{self.name}: " + "; ".join(parts) + (f" (your previous copy: {self.backup})" if self.backup else "")


def _role(cell) -> str | None:
    """The cell's grade id if nbgrader gives it a role (answer, test, locked), else None."""
    if not cell.metadata.get("nbgrader"):
        return None
    if is_solution(cell) or is_grade(cell) or is_locked(cell):
        return cell.metadata.nbgrader.get("grade_id")
    return None


def _touched(cell) -> bool:
    """Whether the student changed an answer cell since it was released (nbgrader's checksum)."""
    stored = cell.metadata.nbgrader.get("checksum")
    try:
        return stored is None or compute_checksum(cell) != stored
    except KeyError:  # metadata broken by hand: treat the cell as the student's work
        return True


def _plain(cell):
    """A copy of ``cell`` without nbgrader's metadata: an answer the release no longer grades."""
    cell = copy.deepcopy(cell)
    cell.metadata.pop("nbgrader", None)
    return cell


def merge(student, release, name: str = "") -> tuple[object, Outcome]:
    """The new release's notebook with the student's answers and own cells carried over.

    ``student`` and ``release`` are nbformat v4 notebooks; neither is changed.
    """
    outcome = Outcome(name)
    new_ids = {cell.get("id") for cell in release.cells}
    new_sources = {cell.source for cell in release.cells if _role(cell) is None}
    new_answers = {_role(c) for c in release.cells if is_solution(c) and _role(c)}
    answers: dict[str, object] = {}
    after: dict[str | None, list] = {}   # id of the release cell a kept cell follows -> cells
    anchor = None
    for cell in student.cells:
        grade_id = _role(cell)
        if grade_id and is_solution(cell) and grade_id in new_answers and grade_id not in answers:
            answers[grade_id] = cell
        elif grade_id and is_solution(cell) and grade_id not in new_answers and _touched(cell):
            outcome.orphaned.append(grade_id)
            after.setdefault(anchor, []).append(_plain(cell))
            continue
        elif grade_id is None and cell.get("id") not in new_ids and cell.source not in new_sources:
            outcome.own += 1
            after.setdefault(anchor, []).append(_plain(cell))
            continue
        elif grade_id is None:
            released = next((c for c in release.cells if c.get("id") == cell.get("id")), cell)
            if cell.source != released.source:
                outcome.replaced.append(cell.get("id"))
        elif grade_id in answers and is_solution(cell) and _touched(cell):   # a copy of an answer cell
            outcome.own += 1
            after.setdefault(anchor, []).append(_plain(cell))
            continue
        if cell.get("id") in new_ids:
            anchor = cell.get("id")
        elif grade_id:
            anchor = next((c.get("id") for c in release.cells if _role(c) == grade_id), anchor)

    merged = copy.deepcopy(release)
    cells = list(after.get(None, []))
    for cell in merged.cells:
        grade_id = _role(cell)
        mine = answers.get(grade_id) if grade_id and is_solution(cell) else None
        if mine is not None and mine.cell_type == cell.cell_type and _touched(mine):
            cell.source = mine.source
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = copy.deepcopy(mine.outputs), mine.execution_count
            outcome.kept.append(grade_id)
        elif mine is not None and _touched(mine):  # the release changed the cell's kind: keep theirs beside it
            after.setdefault(cell.get("id"), []).insert(0, _plain(mine))
            outcome.orphaned.append(grade_id)
        elif mine is not None:
            outcome.refreshed.append(grade_id)
        cells.append(cell)
        cells.extend(after.get(cell.get("id"), []))
    seen = set()
    for cell in cells:  # ids stay unique (a notebook saved by an old Jupyter has none)
        if not cell.get("id") or cell.id in seen:
            cell.id = uuid.uuid4().hex[:8]
        seen.add(cell.id)
    merged.cells = cells
    return merged, outcome


def _read(path: Path):
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # noqa: BLE001 - whatever the reader raises, the notebook is unreadable
        raise SystemExit(f"course update: {path} is not a readable notebook ({type(error).__name__}: {error}); "
                         "nothing was changed") from None


def _backup(path: Path) -> Path:
    for n in range(1, 1000):
        candidate = path.with_name(f"{path.stem}.before-update{'' if n == 1 else f'-{n}'}.ipynb")
        if not candidate.exists():
            return candidate
    raise SystemExit(f"course update: too many backups of {path.name}; remove old *.before-update*.ipynb files")


def update_folder(release: Path, target: Path) -> list[Outcome]:
    """Bring the student's assignment folder ``target`` up to the release in ``release``.

    Notebooks are merged (:func:`merge`); a file of the release the student lacks is copied; a
    file the student already has is left alone. Every notebook is read before any is written."""
    notebooks = sorted(p for p in release.glob("*.ipynb") if not p.stem.endswith(".before-update"))
    if not notebooks:
        raise SystemExit(f"course update: no notebook in {release}: expected the new release of one assignment "
                         "(a folder holding its .ipynb files)")
    target.mkdir(parents=True, exist_ok=True)
    plans = [(path, _read(path), _read(target / path.name) if (target / path.name).is_file() else None)
             for path in notebooks]
    outcomes = []
    for path, new, old in plans:
        destination = target / path.name
        if old is None:
            shutil.copy2(path, destination)
            outcomes.append(Outcome(path.name, backup=""))
            continue
        merged, outcome = merge(old, new, path.name)
        backup = _backup(destination)
        shutil.copy2(destination, backup)
        outcome.backup = backup.name
        fd, scratch = tempfile.mkstemp(dir=target, suffix=".ipynb.tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            nbformat.write(merged, handle)
        os.replace(scratch, destination)
        outcomes.append(outcome)
    for extra in sorted(release.rglob("*")):
        relative = extra.relative_to(release)
        if extra.is_file() and extra.suffix != ".ipynb" and not (target / relative).exists():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(extra, target / relative)
    return outcomes


def fetch_release(assignment: str, into: Path, course_id: str | None) -> Path:
    """nbgrader's fetch_assignment of ``assignment`` into the scratch folder ``into`` (the student's
    own folder is never touched by it: fetch refuses to overwrite one)."""
    cmd = [sys.executable, "-m", "nbgrader", "fetch_assignment", assignment, f"--Exchange.assignment_dir={into}"]
    if course_id:
        cmd.append(f"--course={course_id}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not (into / assignment).is_dir():
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"course update: nbgrader fetch_assignment {assignment} failed: {tail}")
    return into / assignment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``course update``'s arguments (the same for ``python -m course_grader.student.update``)."""
    parser.add_argument("assignment", help="e.g. 02_multi_head_attention: the folder of it here is updated")
    parser.add_argument("--from", dest="source", type=Path, metavar="FOLDER",
                        help="the new release's folder of this assignment (e.g. notebooks/ASSIGNMENT of a new "
                             "student bundle); default: fetched with nbgrader's exchange")
    parser.add_argument("--into", type=Path, default=Path("."), metavar="FOLDER",
                        help="the folder that holds your assignment folder (default: here)")
    parser.add_argument("--course-id", help="the exchange's course id (default: nbgrader_config.py's)")
    parser.set_defaults(run=lambda a: update(a.assignment, a.source, a.into, a.course_id))


def update(assignment: str, source: Path | None, here: Path, course_id: str | None = None) -> int:
    """``course update``: the new release of ``assignment`` (from ``source``, or fetched through
    the exchange) merged into ``here/assignment``. Prints what happened; returns an exit status."""
    if Path(assignment).name != assignment or assignment in ("", ".", ".."):
        raise SystemExit(f"course update: {assignment!r} is not an assignment name (expected e.g. 01_attention)")
    with tempfile.TemporaryDirectory(prefix="course-update-") as scratch:
        release = source if source is not None else fetch_release(assignment, Path(scratch), course_id)
        if not release.is_dir():
            raise SystemExit(f"course update: {release} is not a folder: expected the new release of {assignment}")
        for outcome in update_folder(release, here / assignment):
            print(outcome.summary() if outcome.backup else f"{outcome.name}: new in this release, copied")
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="course update", description=__doc__.split("\n")[0])
    add_arguments(cli)
    arguments = cli.parse_args()
    sys.exit(arguments.run(arguments))
