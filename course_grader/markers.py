"""nbgrader's cell markers as this course writes them (the one place that spells them).

Solution regions sit between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; hidden tests
between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` (nbgrader's ClearSolutions
and ClearHiddenTests find them by the words after ``###``).
"""
from __future__ import annotations

import re

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
ALL = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
SOLUTION_REGION = re.compile(rf"{BEGIN_SOLUTION}\n(.*?){END_SOLUTION}", re.S)
HIDDEN_REGION = re.compile(rf"{BEGIN_HIDDEN}\n(.*?){END_HIDDEN}", re.S)


def has_hidden_tests(source: str) -> bool:
    return BEGIN_HIDDEN in source


def without_solution_markers(source: str) -> str:
    """A solution cell as a student would write it: the marker lines dropped."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def without_hidden_tests(source: str) -> str:
    return re.sub(rf"{BEGIN_HIDDEN}.*?{END_HIDDEN}", "", source, flags=re.S)
