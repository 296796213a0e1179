"""``course update``: a corrected release reaches a student who started, and their work stays.

The student is notebook 01 as released, with some answers written (grading_course.filled); the
corrected release is the same notebook with a prose cell, a stub and a test changed, as an
instructor's fix would change them.
"""
from __future__ import annotations

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from course_grader.student.update import merge, update_folder

from adversarial.cases import ASSIGNMENT
from grading_course import answers, course, filled, released

ANSWERED = ("attention_scores", "scaled_softmax")


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _started():
    """01 with two answers written and the rest untouched (a student half-way)."""
    solution = answers(ASSIGNMENT)
    return filled(ASSIGNMENT, **{g: None for g in solution if g not in ANSWERED})


def _corrected():
    """The instructor's fix: a prose typo, a better stub for apply_mask, a test that checks more."""
    nb = released(ASSIGNMENT)
    prose = next(c for c in nb.cells if c.cell_type == "markdown" and not c.metadata.get("nbgrader"))
    prose.source += "\n\n(Corrected: a typo fixed.)"
    _cell(nb, "apply_mask").source = "def apply_mask(scores, mask):\n    # YOUR CODE HERE (corrected stub)\n" \
                                     "    raise NotImplementedError()"
    _cell(nb, "test_attention").source += "\nprint('one more check')"
    return nb, prose.id


def test_answers_are_kept_and_every_correction_arrives():
    student = _started()
    new, prose_id = _corrected()
    merged, outcome = merge(student, new, "01.ipynb")
    for grade_id in ANSWERED:                 # their answers, in the new release's place
        assert _cell(merged, grade_id).source == _cell(student, grade_id).source
    assert sorted(outcome.kept) == sorted(ANSWERED)
    assert "corrected stub" in _cell(merged, "apply_mask").source     # untouched: the new stub
    assert "apply_mask" in outcome.refreshed
    assert _cell(merged, "test_attention").source == _cell(new, "test_attention").source
    assert next(c for c in merged.cells if c.id == prose_id).source.endswith("(Corrected: a typo fixed.)")
    assert [c.id for c in merged.cells] == [c.id for c in new.cells]   # nothing added, nothing lost
    nbformat.validate(merged)


def test_cells_the_student_added_stay_where_they_were():
    student = _started()
    at = student.cells.index(_cell(student, "attention_scores"))
    mine = new_code_cell("print(q.shape)  # trying things")
    note = new_markdown_cell("My notes on masking.")
    student.cells[at + 1:at + 1] = [mine]
    student.cells.insert(0, note)
    merged, outcome = merge(student, _corrected()[0])
    ids = [c.id for c in merged.cells]
    assert ids[0] == note.id
    assert ids[ids.index(_cell(merged, "attention_scores").id) + 1] == mine.id
    assert outcome.own == 2


def test_an_edited_course_cell_takes_the_correction_and_is_reported():
    student = _started()
    demo = next(c for c in student.cells if c.cell_type == "code" and not c.metadata.get("nbgrader"))
    demo.source = "# my edit\n" + demo.source
    merged, outcome = merge(student, released(ASSIGNMENT))
    assert next(c for c in merged.cells if c.id == demo.id).source == demo.source.removeprefix("# my edit\n")
    assert outcome.replaced == [demo.id]


def test_an_answer_the_release_dropped_is_kept_as_a_plain_cell():
    student = _started()
    new = released(ASSIGNMENT)
    dropped = _cell(new, "scaled_softmax")
    new.cells.remove(dropped)
    new.cells.remove(_cell(new, "test_scaled_softmax"))
    merged, outcome = merge(student, new)
    kept = [c for c in merged.cells if c.source == _cell(student, "scaled_softmax").source]
    assert len(kept) == 1 and "nbgrader" not in kept[0].metadata  # no grade id the gradebook lacks
    assert outcome.orphaned == ["scaled_softmax"]


def test_a_copied_answer_cell_does_not_replace_the_answer():
    student = _started()
    answer = _cell(student, "attention_scores")
    copied = copy.deepcopy(answer)
    copied.id, copied.source = "copy0001", answer.source + "\n# second try"
    student.cells.insert(student.cells.index(answer) + 1, copied)
    merged, outcome = merge(student, released(ASSIGNMENT))
    assert _cell(merged, "attention_scores").source == answer.source
    assert [c.source for c in merged.cells if c.id == "copy0001"] == [copied.source]
    assert "nbgrader" not in next(c for c in merged.cells if c.id == "copy0001").metadata


def test_a_notebook_saved_without_cell_ids_is_matched_by_source():
    student = _started()
    for cell in student.cells:
        cell.pop("id")
    student.nbformat_minor = 4
    merged, outcome = merge(student, released(ASSIGNMENT))
    assert outcome.own == 0 and len(merged.cells) == len(released(ASSIGNMENT).cells)
    nbformat.validate(merged)


def test_update_folder_keeps_a_backup_and_copies_what_is_new(tmp_path):
    release, target = tmp_path / "release", tmp_path / "mine" / ASSIGNMENT
    release.mkdir()
    target.mkdir(parents=True)
    nbformat.write(_corrected()[0], release / f"{ASSIGNMENT}.ipynb")
    (release / "data.txt").write_text("new data")
    nbformat.write(_started(), target / f"{ASSIGNMENT}.ipynb")
    before = (target / f"{ASSIGNMENT}.ipynb").read_bytes()
    [outcome] = update_folder(release, target)
    assert (target / f"{ASSIGNMENT}.before-update.ipynb").read_bytes() == before
    assert (target / "data.txt").read_text() == "new data"
    merged = nbformat.read(target / f"{ASSIGNMENT}.ipynb", as_version=4)
    assert _cell(merged, "attention_scores").source == _cell(_started(), "attention_scores").source
    update_folder(release, target)                       # a second update keeps a second backup
    assert (target / f"{ASSIGNMENT}.before-update-2.ipynb").is_file()
    assert outcome.backup in outcome.summary()


def test_an_unreadable_notebook_changes_nothing(tmp_path):
    release, target = tmp_path / "release", tmp_path / ASSIGNMENT
    release.mkdir()
    target.mkdir()
    nbformat.write(released(ASSIGNMENT), release / f"{ASSIGNMENT}.ipynb")
    (target / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    with pytest.raises(SystemExit, match="not a readable notebook.*nothing was changed"):
        update_folder(release, target)
    assert sorted(p.name for p in target.iterdir()) == [f"{ASSIGNMENT}.ipynb"]
    assert (target / f"{ASSIGNMENT}.ipynb").read_text() == '{"cells": ['


@pytest.mark.parametrize("name", ["../etc", "a/b", ".."])
def test_course_update_refuses_a_path_for_an_assignment(tmp_path, name):
    done = course(tmp_path, "update", name, "--from", str(tmp_path))
    assert done.returncode != 0 and "not an assignment name" in done.stderr


def test_course_update_from_a_folder_without_notebooks_says_what_it_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    done = course(tmp_path, "update", ASSIGNMENT, "--from", str(tmp_path / "empty"), "--into", str(tmp_path))
    assert done.returncode != 0 and "no notebook in" in done.stderr and "new release" in done.stderr
