"""course_lib.checks.nb00_recurrence: each check accepts a correct answer and names each mistake it claims to detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import checks, recurrent

gru_cell, additive_scores = student_copy(recurrent.gru_cell), student_copy(recurrent.additive_scores)


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh, mistake=None):
    """One GRU step as a student writes it, with one mistake (or none)."""
    r_x, z_x, n_x = (x @ w_ih.T + b_ih).chunk(3, -1)
    r_h, z_h, n_h = (h @ w_hh.T + b_hh).chunk(3, -1)
    if mistake == "z r n":
        (r_x, z_x), (r_h, z_h) = (z_x, r_x), (z_h, r_h)
    gate = torch.tanh if mistake == "tanh gates" else torch.sigmoid
    r, z = gate(r_x + r_h), gate(z_x + z_h)
    if mistake == "bias outside":
        hidden = r * (h @ w_hh.T).chunk(3, -1)[2] + b_hh.chunk(3)[2]
    else:
        hidden = n_h if mistake == "no reset" else r * n_h
    n = n_x + hidden if mistake == "no tanh" else torch.tanh(n_x + hidden)
    if mistake == "candidate":
        return n
    return z * n + (1 - z) * h if mistake == "swapped blend" else (1 - z) * n + z * h


def test_gru_step_check_accepts_course_lib_and_a_student():
    checks.check_gru_step(gru_cell)
    checks.check_gru_step(gru_step)


@pytest.mark.parametrize("mistake, fragment", [
    ("swapped blend", "blends the wrong way round"), ("bias outside", "bias included"), ("z r n", "you read them as z"),
    ("no tanh", "needs the tanh"), ("no reset", "reset gate is missing"), ("tanh gates", "need a sigmoid"),
    ("candidate", "not the candidate n"),
])
def test_gru_step_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_gru_step, lambda *a: gru_step(*a, mistake=mistake), fragment)


def test_gru_step_check_refuses_torch_gru_cell():
    def delegated(x, h, w_ih, w_hh, b_ih, b_hh):
        cell = torch.nn.GRUCell(x.shape[1], h.shape[1]).double()
        with torch.no_grad():
            for p, w in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (w_ih, w_hh, b_ih, b_hh)):
                p.copy_(w)
        return cell(x, h)
    with pytest.raises(checks.CheckFailed, match="GRUCell"):
        checks.check_gru_step(delegated)


def scores(query, keys, w_q, w_k, v, mistake=None):
    """Additive scores as a student writes them, with one mistake (or none)."""
    q, k = query @ w_q.T, keys @ w_k.T
    if mistake == "tanh each":
        return (torch.tanh(q).unsqueeze(1) + torch.tanh(k)) @ v
    hidden = q.unsqueeze(1) + k
    if mistake == "no tanh":
        e = hidden @ v
    else:
        e = torch.tanh(hidden).sum(-1) if mistake == "no v" else torch.tanh(hidden) @ v
    return e.softmax(-1) if mistake == "softmax" else e


def test_additive_scores_check_accepts_course_lib_and_a_student():
    checks.check_additive_scores(additive_scores)
    checks.check_additive_scores(scores)


@pytest.mark.parametrize("mistake, fragment", [
    ("no tanh", "the tanh is missing"), ("softmax", "the softmax over them comes after"), ("no v", "v is missing"),
    ("tanh each", "not to each term"),
])
def test_additive_scores_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_additive_scores, lambda *a: scores(*a, mistake=mistake), fragment)


def test_additive_scores_check_says_how_the_shapes_go_when_the_query_is_not_broadcast():
    fails_with_shapes = lambda query, keys, w_q, w_k, v: torch.tanh(query @ w_q.T + keys @ w_k.T) @ v  # noqa: E731
    with pytest.raises(checks.CheckFailed, match="unsqueeze"):
        checks.check_additive_scores(fails_with_shapes)
