"""nbgrader preprocessors that nbgrader_config.py plugs into autograde and feedback."""
from __future__ import annotations

from nbformat.v4 import new_code_cell
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

HIDDEN_MARKER = "BEGIN HIDDEN TESTS"
# What grading changed in a submission, one line each: ``course grade`` clears it before each
# submission and puts it in the report (the preprocessors run in the grading process).
incidents: list[str] = []


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

    It also puts back what a student removed or moved, so that every test still runs on the
    student's answers: a deleted (or renamed) test cell comes back after the cell that
    precedes it in the assignment, and cells known to the gradebook are put back in the
    assignment's order (a student's own cells travel with the cell they followed).
    """

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        with Gradebook(self.db_url) as gb:
            notebook = gb.find_notebook(self.notebook_id, self.assignment_id)
            order = [c.name for c in notebook.source_cells]
            max_scores = {c.name: c.max_score for c in notebook.grade_cells}
            tests = {c.name: self.missing_cell_transform(c, max_scores[c.name])
                     for c in notebook.source_cells if c.locked and c.name in max_scores}
        for name, cell in tests.items():
            cell["id"] = f"restored-{name}"
        nb.cells = self._restore_order(nb.cells, order)
        nb.cells = self._add_missing(nb.cells, order, tests)
        return nb, resources

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
            incidents.append("cells were reordered: put back in the assignment's order")
        return [cell for _, group in ordered for cell in group]

    def _add_missing(self, cells: list, order: list[str], tests: dict) -> list:
        for name in order:
            if name not in tests or name in {self._grade_id(c) for c in cells}:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", name)
            incidents.append(f"test cell {name} was missing: put back")
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
            incidents.append(f"cell id '{grade_id}' is not part of this assignment")
            del cell.metadata["nbgrader"]
            return cell, resources
        self._restore_roles(cell, grade_id)
        if utils.is_locked(cell) and cell.source == released_source(source_cell.source):
            cell.source = source_cell.source
        return super().preprocess_cell(cell, resources, cell_index)

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
            incidents.append(f"nbgrader metadata of cell {grade_id} was changed: restored")
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
        if cell.cell_type == "code" and HIDDEN_MARKER in cell.source:
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources

