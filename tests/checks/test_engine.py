"""course_lib.checks.engine: check_close names a mistake only when it explains the value, and check_choice."""
import pytest
import torch

from course_lib import checks

EXPECTED = torch.tensor([[1.0, float("-inf")], [0.5, 2.0]])


@pytest.mark.parametrize("actual", [EXPECTED.clone(), EXPECTED.masked_fill(EXPECTED.isinf(), -1e9),
                                    EXPECTED + 1e-7], ids=["equal", "very negative as -inf", "within atol"])
def test_check_close_accepts_the_same_values(actual):
    checks.check_close(actual, EXPECTED, "x", {"a mistake": EXPECTED + 1})


@pytest.mark.parametrize("actual, fragment", [
    (None, "forget to `return`"),
    ([[1.0, 0.0]], "should be a torch.Tensor, got list"),
    (EXPECTED + 1, "x is not right: a mistake"),
    (EXPECTED.T[:1], "should have shape (2, 2), got (1, 2)"),
    (torch.full((2, 2), float("nan")), "contains NaN"),
    (EXPECTED * 2, "wrong values, first at [0, 0]: got 2, expected 1"),
    (EXPECTED.masked_fill(EXPECTED.isinf(), 0.0), "first at [0, 1]: got 0, expected -inf"),
])
def test_check_close_says_what_is_wrong(actual, fragment):
    with pytest.raises(checks.CheckFailed) as error:
        checks.check_close(actual, EXPECTED, "x", {"a mistake": EXPECTED + 1})
    assert fragment in str(error.value), str(error.value)


@pytest.mark.parametrize("answer, fragment", [
    ("2", "as an int"), (2.0, "as an int"), (True, "as an int"), (None, "as an int"), (4, "one of 1, 2, 3")])
def test_choice_check_accepts_exactly_the_ints_that_the_hidden_test_grades(answer, fragment):
    checks.check_choice(2, (1, 2, 3))
    with pytest.raises(checks.CheckFailed, match=fragment):
        checks.check_choice(answer, (1, 2, 3))
