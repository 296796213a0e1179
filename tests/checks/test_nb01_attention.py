"""course_lib.checks.nb01_attention: each check accepts a correct answer and names each mistake it claims to detect."""
import math

import pytest
import torch
from student_copies import student_copy

from course_lib import checks
from course_lib.attention import scaled_dot_product_attention as reference

scaled_dot_product_attention = student_copy(reference)


def test_attention_scores_check_accepts_q_kt():
    checks.check_attention_scores(lambda q, k: q @ k.transpose(-2, -1))


@pytest.mark.parametrize("student, fragment", [
    (lambda q, k: k @ q.transpose(-2, -1), "k @ q^T"),
    (lambda q, k: q @ k.transpose(-2, -1) / 2, "don't scale here"),
    (lambda q, k: None, "forget to `return`"),
])
def test_attention_scores_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_attention_scores, student, fragment)


def test_scaled_softmax_check_accepts_the_formula():
    checks.check_scaled_softmax(lambda s, d: torch.softmax(s / math.sqrt(d), -1))


@pytest.mark.parametrize("student, fragment", [
    (lambda s, d: torch.softmax(s, -1), "missing the 1/sqrt(d_k)"),
    (lambda s, d: torch.softmax(s / math.sqrt(d), -2), "wrong axis"),
    (lambda s, d: torch.softmax(s / d, -1), "instead of sqrt(d_k)"),
])
def test_scaled_softmax_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_scaled_softmax, student, fragment)


@pytest.mark.parametrize("fill", [float("-inf"), -1e9], ids=["-inf", "very negative"])
def test_apply_mask_check_accepts_minus_infinity(fill):
    checks.check_apply_mask(lambda s, m: s.masked_fill(~m, fill))


@pytest.mark.parametrize("student, fragment", [
    (lambda s, m: s.masked_fill(m, float("-inf")), "wrong polarity"),
    (lambda s, m: s.masked_fill(~m, 0.0), "not 0"),
])
def test_apply_mask_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_apply_mask, student, fragment)


def unscaled(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1)
    w = (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)
    return w @ v, w


def test_attention_check_accepts_course_lib():
    checks.check_attention(scaled_dot_product_attention)


@pytest.mark.parametrize("student, fragment", [
    (unscaled, "missing the 1/sqrt(d_k)"),
    (lambda q, k, v, mask=None: scaled_dot_product_attention(
        q, k, v, None if mask is None else ~mask | ~mask.any(-1, keepdim=True)), "wrong polarity"),
    (lambda q, k, v, mask=None: scaled_dot_product_attention(q, k, v, mask)[0], "tuple (output, weights)"),
])
def test_attention_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_attention, student, fragment)
