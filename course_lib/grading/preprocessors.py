"""nbgrader preprocessors that nbgrader_config.py plugs into autograde and feedback."""
from __future__ import annotations

from nbformat.v4 import new_code_cell
from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

HIDDEN_MARKER = "BEGIN HIDDEN TESTS"


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
    """

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and utils.is_locked(cell):
            try:
                source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:
                source_cell = None
            if source_cell is not None and cell.source == released_source(source_cell.source):
                cell.source = source_cell.source
        return super().preprocess_cell(cell, resources, cell_index)


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

