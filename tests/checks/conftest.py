"""The helper that every checks test uses: a check must reject a student's version with a named mistake."""
from typing import Callable

import pytest

from course_lib import checks


@pytest.fixture
def fails_with() -> Callable[..., None]:
    """``fails_with(check, student, *fragments)``: check(student) raises CheckFailed naming every fragment."""
    def assert_fails(check: Callable, student, *fragments: str) -> None:
        with pytest.raises(checks.CheckFailed) as error:
            check(student)
        for fragment in fragments:
            assert fragment in str(error.value), str(error.value)
    return assert_fails
