"""Typical wrong submissions for the nbgrader round trip (tests/test_roundtrip.py).

Each case edits one answer cell of an otherwise correct submission (``old`` -> ``new`` in the
cell whose grade_id is ``cell``) and names the test cells that must then lose all their
points; every other test cell keeps its points. That is the rubric each case implies.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    cell: str
    old: str
    new: str
    fails: frozenset


WRONG_SUBMISSIONS = {
    "01_attention": [
        # scaled_softmax is used by attention, so both lose their points.
        Case("missing sqrt(d_k)", "scaled_softmax", "scores / math.sqrt(d_k)", "scores",
             frozenset({"test_scaled_softmax", "test_attention"})),
        Case("inverted mask", "apply_mask", "masked_fill(~mask", "masked_fill(mask",
             frozenset({"test_apply_mask", "test_attention"})),
        Case("wrong quiz answer", "quiz_scaling", "quiz_scaling = 2", "quiz_scaling = 3",
             frozenset({"test_quiz_scaling"})),
    ],
}
