"""course_lib.checks.nb09_efficient_attention: each check accepts a correct answer and names each mistake it
claims to detect."""
import pytest
import torch
import torch.nn.functional as F
from student_copies import student_copy

from course_lib import checks, efficient
from course_lib.attention import scaled_dot_product_attention

linear_attention, sliding_window_mask = map(student_copy, (efficient.linear_attention, efficient.sliding_window_mask))


def window_mask(keep, causal_part=lambda off: off >= 0, dtype=torch.bool):
    """A sliding_window_mask whose window test is ``keep(offset, window)``, offset = i - j."""
    def student(seq_len, window, causal=False):
        pos = torch.arange(seq_len)
        offset = pos[:, None] - pos[None, :]
        mask = keep(offset, window)
        return (mask & causal_part(offset) if causal else mask).to(dtype)
    return student


@pytest.mark.parametrize("student", [sliding_window_mask, window_mask(lambda off, w: (off <= w) & (off >= -w))],
                         ids=["course_lib", "student"])
def test_sliding_window_mask_check_accepts_a_right_mask(student):
    checks.check_sliding_window_mask(student)


@pytest.mark.parametrize("student, fragments", [
    (window_mask(lambda off, w: off.abs() < w), ["off by one", "< window"]),
    (window_mask(lambda off, w: off.abs() <= w + 1), ["off by one", "too many"]),
    (lambda s, w, causal=False: ~sliding_window_mask(s, w, causal), ["wrong polarity"]),
    (lambda s, w, causal=False: sliding_window_mask(s, w), ["causal=True is ignored"]),
    (window_mask(lambda off, w: off.abs() <= w, lambda off: off <= 0), ["hides the past"]),
    (lambda s, w, causal=False: torch.ones(s, s, dtype=torch.bool).tril() if causal else sliding_window_mask(s, w),
     ["window still applies"]),
    (lambda s, w, causal=False: sliding_window_mask(s, w, True), ["both ways"]),
    (window_mask(lambda off, w: (off.abs() <= w) & (off != 0)), ["diagonal is missing"]),
    (window_mask(lambda off, w: off.abs() <= w, dtype=torch.float32), ["torch.bool"]),
    (lambda s, w, causal=False: None, ["forget to `return`"]),
])
def test_sliding_window_mask_check_names_the_mistake(fails_with, student, fragments):
    fails_with(checks.check_sliding_window_mask, student, *fragments)


def identity(x):
    return x


def linear(phi_q=None, phi_k=None, normalize=True, causal_numerator=True, causal_normalizer=True):
    """A linear_attention with the given pieces; the defaults make it right."""
    def right(x):
        return F.elu(x) + 1
    phi_q, phi_k = phi_q or right, phi_k or right

    def student(q, k, v, causal=False):
        fq, fk = phi_q(q), phi_k(k)
        if causal and causal_numerator:
            state = torch.einsum("...jd,...je->...jde", fk, v).cumsum(-3)
            num = torch.einsum("...id,...ide->...ie", fq, state)
        else:
            num = fq @ (fk.transpose(-2, -1) @ v)
        z = fk.cumsum(-2) if causal and causal_normalizer else fk.sum(-2, keepdim=True)
        return num / (fq * z).sum(-1, keepdim=True) if normalize else num
    return student


def quadratic_linear_attention(q, k, v, causal=False):
    """The right values through the (seq_q, seq_k) kernel matrix, which the contract forbids."""
    a = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)
    a = a.tril() if causal else a
    return (a @ v) / a.sum(-1, keepdim=True)


@pytest.mark.parametrize("student", [linear_attention, linear()], ids=["course_lib", "student"])
def test_linear_attention_check_accepts_a_right_attention(student):
    checks.check_linear_attention(student)


@pytest.mark.parametrize("student, fragment", [
    (linear(identity, identity), "feature map is missing"),
    (linear(F.elu, F.elu), "the + 1 is missing"),
    (linear(phi_k=identity), "to the keys too"),
    (linear(phi_q=identity), "to the queries too"),
    (linear(torch.exp, torch.exp), "not exp(x)"),
    (linear(phi_q=lambda x: F.elu(x / 2) + 1), "no 1/sqrt(d_k)"),
    (linear(normalize=False), "normalizer is missing"),
    (linear(causal_numerator=False, causal_normalizer=False), "causal=True is ignored"),
    (linear(causal_normalizer=False), "running sum too"),
    (lambda q, k, v, causal=False: linear_attention(q, k, v, causal=True), "only j <= i"),
    (lambda q, k, v, causal=False: scaled_dot_product_attention(
        q, k, v, torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None)[0],
     "this is softmax attention"),
    (lambda q, k, v, causal=False: None, "forget to `return`"),
    (quadratic_linear_attention, "not to build it"),
])
def test_linear_attention_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_linear_attention, student, fragment)
