"""nbgrader preprocessors that nbgrader_config.py plugs into autograde and feedback."""
from __future__ import annotations

import copy
import os

import nbformat
from nbformat.v4 import new_code_cell
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, DeduplicateIds, NbGraderPreprocessor, OverwriteCells
from traitlets import Integer

from ..markers import BEGIN_HIDDEN, END_HIDDEN, HIDDEN_REGION, has_hidden_tests
from ..protocol import Incident

# What grading noticed in a submission: the worker clears it before each submission and
# returns it in the Result (these preprocessors and GuardedExecute run in the worker).
incidents: list[Incident] = []
# nbgrader's report_change attributes, as the report words them.
CHANGES = {"checksum": "test cell {} was edited: restored", "points": "points of cell {} were changed: restored",
           "locked": "cell {} was unlocked: restored", "cell_type": "type of cell {} was changed: restored"}


def released_source(source: str) -> str:
    """What a test cell's source looks like in the student's notebook: hidden tests removed."""
    cell = new_code_cell(source)
    ClearHiddenTests()._remove_hidden_test_region(cell)
    return cell.source


class RestoreHiddenTests(OverwriteCells):
    """OverwriteCells that restores hidden tests without calling an untouched cell "changed".

    nbgrader checksums a locked test cell with its hidden tests, and the released copy
    without them, so stock autograde warns "Attribute 'checksum' ... has changed!" for
    every untouched submission. Here a locked cell whose source is exactly the released
    one gets its hidden tests back first, so the warning is left for real edits.

    A locked cell (a test, the instructor's text and code) runs exactly as released: its
    metadata (tags such as ``skip-execution`` included) comes back from the released notebook,
    its source and type from the gradebook.

    It also puts back what a student removed or moved, so that every test still runs on the
    student's answers: a deleted (or renamed) test cell comes back after the cell that
    precedes it in the assignment, and cells known to the gradebook are put back in the
    assignment's order (a student's own cells travel with the cell they followed).
    """

    def preprocess(self, nb, resources):
        self._released = self._released_cells(resources["nbgrader"]["assignment"], resources["nbgrader"]["notebook"])
        nb, resources = super().preprocess(nb, resources)
        with Gradebook(self.db_url) as gb:
            notebook = gb.find_notebook(self.notebook_id, self.assignment_id)
            order = [c.name for c in notebook.source_cells]
            max_scores = {c.name: c.max_score for c in notebook.grade_cells}
            tests = {c.name: self.missing_cell_transform(c, max_scores[c.name])
                     for c in notebook.source_cells if c.locked and c.name in max_scores}
        for name, cell in tests.items():
            cell["id"] = f"restored-{name}"
            if name in self._released:
                cell.metadata = copy.deepcopy(self._released[name].metadata)
        nb.cells = self._restore_order(nb.cells, order)
        nb.cells = self._add_missing(nb.cells, order, tests)
        return nb, resources

    def _released_cells(self, assignment: str, notebook: str) -> dict:
        """grade_id -> cell of the released notebook (the course's release folder); {} without one."""
        coursedir = CourseDirectory(config=self.config)
        path = os.path.join(coursedir.format_path(coursedir.release_directory, ".", assignment), f"{notebook}.ipynb")
        if not os.path.exists(path):
            return {}
        released = nbformat.read(path, as_version=4)
        return {self._grade_id(c): c for c in released.cells if self._grade_id(c)}

    @staticmethod
    def _grade_id(cell) -> str | None:
        return cell.metadata.get("nbgrader", {}).get("grade_id")

    def _restore_order(self, cells: list, order: list[str]) -> list:
        rank = {name: i for i, name in enumerate(order)}
        groups: list[tuple[int, list]] = [(-1, [])]
        for cell in cells:
            if self._grade_id(cell) in rank:
                groups.append((rank[self._grade_id(cell)], [cell]))
            else:
                groups[-1][1].append(cell)
        ordered = sorted(groups, key=lambda group: group[0])
        if [g[0] for g in ordered] != [g[0] for g in groups]:
            self.log.warning("Cells were out of order: put back in the assignment's order")
            incidents.append(Incident("reordered", "cells were reordered: put back in the assignment's order"))
        return [cell for _, group in ordered for cell in group]

    def _add_missing(self, cells: list, order: list[str], tests: dict) -> list:
        for name in order:
            if name not in tests or name in {self._grade_id(c) for c in cells}:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", name)
            incidents.append(Incident("missing_cell", f"test cell {name} was missing: put back", name))
            before, after = order[:order.index(name)], order[order.index(name) + 1:]
            earlier = [i for i, c in enumerate(cells) if self._grade_id(c) in before]
            later = [i for i, c in enumerate(cells) if self._grade_id(c) in after]
            cells.insert(earlier[-1] + 1 if earlier else later[0] if later else len(cells), tests[name])
        return cells

    def preprocess_cell(self, cell, resources, cell_index):
        if "nbgrader" not in cell.metadata:
            return cell, resources
        if not cell.metadata.nbgrader:  # emptied by DeduplicateIds: a duplicate, graded once
            del cell.metadata["nbgrader"]
            return cell, resources
        grade_id = cell.metadata.nbgrader.get("grade_id")
        try:
            source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
        except MissingEntry:
            # Not a cell of this assignment (renamed id, another assignment's notebook):
            # an ordinary cell now; a test cell it replaced is put back by _add_missing.
            self.log.warning("Cell '%s' does not exist in the database", grade_id)
            incidents.append(Incident("foreign_cell", f"cell id {grade_id!r} is not part of this assignment", grade_id))
            del cell.metadata["nbgrader"]
            return cell, resources
        if source_cell.locked and grade_id in self._released:
            self._restore_metadata(cell, self._released[grade_id], grade_id)
        self._restore_roles(cell, grade_id)
        if utils.is_locked(cell) and cell.source == released_source(source_cell.source):
            cell.source = source_cell.source
        return super().preprocess_cell(cell, resources, cell_index)

    def report_change(self, name: str, attr: str, old, new) -> None:
        super().report_change(name, attr, old, new)
        incidents.append(Incident("edited_cell", CHANGES[attr].format(name), name))

    def _restore_metadata(self, cell, released, grade_id: str) -> None:
        """The released cell's metadata, whatever the student's says (``skip-execution`` would skip a test)."""
        if (cell.metadata.get("tags", []) != released.metadata.get("tags", [])
                or {k: v for k, v in cell.metadata.nbgrader.items() if k != "checksum"}
                != {k: v for k, v in released.metadata.nbgrader.items() if k != "checksum"}):
            self.log.warning("Metadata of cell %s was changed: restored", grade_id)
            incidents.append(Incident("metadata_restored", f"metadata of cell {grade_id} was changed: restored",
                                      grade_id))
        cell.metadata = copy.deepcopy(released.metadata)

    def _restore_roles(self, cell, grade_id: str) -> None:
        """A student may flip ``grade``/``solution`` in the metadata: the gradebook decides."""
        roles = {}
        for role, finder in (("grade", self.gradebook.find_grade_cell),
                             ("solution", self.gradebook.find_solution_cell)):
            try:
                finder(grade_id, self.notebook_id, self.assignment_id)
                roles[role] = True
            except MissingEntry:
                roles[role] = False
        if any(bool(cell.metadata.nbgrader.get(role)) != value for role, value in roles.items()):
            self.log.warning("Metadata of cell %s was changed: restored", grade_id)
            incidents.append(Incident("metadata_restored",
                                      f"nbgrader metadata of cell {grade_id} was changed: restored",
                                      grade_id))
            cell.metadata.nbgrader.update(roles)
            if roles["grade"]:
                cell.metadata.nbgrader.setdefault("points", 0)


class HideHiddenTestTracebacks(NbGraderPreprocessor):
    """Feedback: a test cell with hidden tests shows its error as one line, not a traceback.

    A traceback quotes the source lines around the failing assert, which would reveal the
    hidden tests; the exception's name and message (the visible checks' explanation) stay.
    Run it before ClearHiddenTests, which then removes the hidden source itself.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and has_hidden_tests(cell.source):
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


class RedactHiddenTests(NbGraderPreprocessor):
    """Feedback, the last filter: no output line quotes a line of the hidden tests.

    Code a test calls can read the test's source while it runs (its frames, the kernel's
    request) and print it, or put it in an error message. Every output line (streams, errors
    and tracebacks, text of any display) that holds a hidden-test line, whitespace ignored,
    is replaced. Run it before ClearHiddenTests, which removes the hidden source itself.
    """

    min_length = Integer(10, help="Hidden-test lines shorter than this (without whitespace) are not "
                                  "looked for: too common to be telling.").tag(config=True)
    REMOVED = "[a line quoting the hidden tests was removed]"

    def preprocess(self, nb, resources):
        self._hidden = {_compact(line) for cell in nb.cells if cell.cell_type == "code"
                        for block in HIDDEN_REGION.findall(cell.source)
                        for line in [BEGIN_HIDDEN, END_HIDDEN, *block.splitlines()]
                        if len(_compact(line)) >= self.min_length}
        self._removed = 0
        nb, resources = super().preprocess(nb, resources)
        if self._removed:
            incidents.append(Incident("hidden_test_quoted", f"feedback: {self._removed} output line(s) quoting the "
                                                            "hidden tests were removed"))
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []) if self._hidden else []:
            if "text" in output:
                output.text = self._redact(output.text)
            if output.get("output_type") == "error":
                output.evalue = self._redact(output.evalue)
                output.traceback = [self._redact(line) for line in output.traceback]
            for mime, value in output.get("data", {}).items():
                if isinstance(value, (str, list)) and (mime.startswith("text/") or mime.endswith("json")):
                    output.data[mime] = self._redact("".join(value) if isinstance(value, list) else value)
        return cell, resources

    def _redact(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            compact = _compact(line)
            if any(hidden in compact for hidden in self._hidden):
                lines[i], self._removed = self.REMOVED + ("\n" if line.endswith("\n") else ""), self._removed + 1
        return "".join(lines)


def _compact(text: str) -> str:
    return "".join(text.split())


class RecordDuplicateIds(DeduplicateIds):
    """nbgrader's DeduplicateIds (the last copy of a cell id is graded), recording each duplicate."""

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        seen = grade_id in self.grade_ids
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if seen and not cell.metadata.get("nbgrader"):
            incidents.append(Incident("duplicated_cell", f"cell {grade_id} was duplicated: graded once", grade_id))
        return cell, resources
