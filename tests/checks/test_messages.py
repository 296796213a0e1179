"""Every check's failure is one clean line: the untouched stub, a wrong answer and a call to the
exercise's own reference show no line of the checks' or the references' source, as IPython (and so
Jupyter and nbgrader's feedback) displays them; the reference scores 0 with its message."""
import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from torch import nn

import course_lib
from course_lib import (
    attention,
    bert,
    checks,
    decoder,
    decoding,
    efficient,
    encoder,
    family,
    multihead,
    positional,
    recurrent,
    sampling,
    training,
)


def stub(*args, **kwargs):
    raise NotImplementedError()


class StubModule(nn.Module):
    """A class exercise as released: the given __init__, forward still to write."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        raise NotImplementedError()


def wrong_function(*args, **kwargs):
    return torch.zeros(3, 3) + args[0].sum() if isinstance(args[0], torch.Tensor) else 1.5


# (check, a wrong answer, the exercise's own reference); the stub is tried on every check.
CASES = {
    "check_gru_step": (stub, lambda x, h, *w: h, recurrent.gru_cell),
    "check_additive_scores": (stub, lambda q, keys, w_q, w_k, v: keys.sum(-1), recurrent.additive_scores),
    "check_attention_scores": (stub, lambda q, k: q @ k.T, None),
    "check_scaled_softmax": (stub, lambda s, d: s.softmax(-2), None),
    "check_apply_mask": (stub, lambda s, m: s.masked_fill(m, 0.0), None),
    "check_attention": (stub, lambda q, k, v, mask=None: (q, k), attention.scaled_dot_product_attention),
    "check_split_heads": (stub, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), multihead.split_heads),
    "check_merge_heads": (stub, lambda x: x.reshape(x.shape[0], x.shape[2], -1), multihead.merge_heads),
    "check_multihead": (StubModule, StubModule, multihead.MultiHeadAttention),
    "check_sinusoidal_encoding": (stub, lambda n, d: torch.ones(n, d), positional.sinusoidal_encoding),
    "check_embed_with_positions": (stub, lambda t, e, pe: e(t), None),
    "check_layer_norm": (StubModule, nn.LayerNorm, encoder.LayerNorm),
    "check_encoder_layer": (StubModule, decoder.DecoderLayer, encoder.EncoderLayer),
    "check_decoder_layer": (StubModule, encoder.EncoderLayer, decoder.DecoderLayer),
    "check_is_causal": (stub, lambda fn, x: True, None),
    "check_label_smoothing_loss": (stub, lambda lg, t, s, p: F.cross_entropy(lg, t), training.LabelSmoothingLoss),
    "check_rate": (stub, lambda s, d, w: d ** -0.5 * min(max(s, 1) ** -0.5, max(s, 1) * w ** 1.5),
                   training.transformer_lr),
    "check_train_step": (stub, lambda *a: 0.0, training.train_step),
    "check_greedy_decode": (stub, lambda model, src, *a: src, decoding.greedy_decode),
    "check_mask_tokens": (stub, lambda ids, *a, **k: (ids, ids), bert.mask_tokens),
    "check_nsp_pairs": (stub, lambda docs, rng: [], bert.make_nsp_pairs),
    "check_classification_head": (StubModule, StubModule, bert.ClassificationHead),
    "check_next_token_probs": (stub, lambda lg, t, k: lg.softmax(-1) / t, sampling.top_k_filter),
    "check_top_p_filter": (stub, lambda lg, p: lg, sampling.top_p_filter),
    "check_attend_with_cache": (stub, lambda attn, x, k, v: (x, k, v), None),
    "check_sliding_window_mask": (stub, lambda n, w, causal=False: torch.ones(n, n, dtype=torch.bool),
                                  efficient.sliding_window_mask),
    "check_linear_attention": (stub, lambda q, k, v, causal=False: v, efficient.linear_attention),
    "check_prefix_lm_mask": (stub, lambda p, n: torch.ones(n, n, dtype=torch.bool).tril(), family.prefix_lm_mask),
    "check_mix_tasks": (stub, lambda tasks, seed=0: [p for pairs in tasks.values() for p in pairs], family.mix_tasks),
}


def _source_lines() -> set[str]:
    """Every substantial line of course_lib's source: none may reach a student's screen."""
    lines = set()
    for path in Path(course_lib.__file__).parent.rglob("*.py"):
        lines |= {s for line in path.read_text().splitlines() if len(s := line.strip()) >= 20
                  and not s.startswith(("#", '"""'))}
    return lines


SOURCE = _source_lines()


def shown(check, student) -> str:
    """What a notebook shows when ``check(student)`` runs in a cell (IPython's own traceback display)."""
    shell = InteractiveShell.instance()
    shell.user_ns.update(check=check, student=student)
    with capture_output() as captured:
        shell.run_cell("check(student)")
    return captured.stdout + captured.stderr


def test_every_check_is_covered():
    exercises = {name for name in checks.__all__ if name.startswith("check_")} - {"check_close", "check_choice"}
    assert set(CASES) == exercises


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_source_in_what_the_student_sees(name):
    check = getattr(checks, name)
    stub_answer, wrong, reference = CASES[name]
    for student in (stub_answer, wrong) + ((reference,) if reference else ()):
        out = shown(check, student)
        assert "CheckFailed: " in out, out
        leaked = [line for line in SOURCE if line in out]
        assert not leaked, f"{name} shows course_lib source {leaked[:3]} in:\n{out}"
        assert "Traceback" not in out and "course_lib" + "/" not in out, out
    if stub_answer is stub:  # a class without the given __init__ is told which attribute it lacks
        assert "the exercise is not done yet" in shown(check, stub_answer)


def test_the_stub_is_named_with_the_call_and_the_students_own_frame():
    def attention_scores(q, k):
        raise NotImplementedError()

    out = shown(checks.check_attention_scores, attention_scores)
    assert "your attention_scores(q=a (2, 3, 4) tensor, k=a (2, 5, 4) tensor) raised NotImplementedError" in out
    assert "raise NotImplementedError()" in out and inspect.getsourcefile(stub) in out, out


@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case[2] is not None))
def test_calling_the_reference_is_refused(name):
    check, reference = getattr(checks, name), CASES[name][2]
    with pytest.raises(checks.CheckFailed, match="scores 0"):
        check(reference)
    assert reference in check.forbidden.values() or any(
        isinstance(v, tuple) and v[0] is reference for v in check.forbidden.values())


def test_an_alias_or_a_helper_that_calls_the_reference_is_refused():
    sdpa = attention.scaled_dot_product_attention

    def helper(q, k, v, mask):
        return sdpa(q, k, v, mask)

    for student in (lambda q, k, v, mask=None: helper(q, k, v, mask),
                    lambda q, k, v, mask=None: (F.scaled_dot_product_attention(q, k, v), None)):
        with pytest.raises(checks.CheckFailed, match="scores 0"):
            checks.check_attention(student)


def test_own_work_in_a_hidden_test():
    def mine(x):
        return multihead.split_heads(x, 2)

    with pytest.raises(checks.CheckFailed, match="mine calls course_lib.multihead.split_heads"):
        with checks.own_work(checks.check_split_heads, mine):
            multihead.split_heads(torch.zeros(1, 2, 4), 2)  # the test's own call does not count
            mine(torch.zeros(1, 2, 4))
    with checks.own_work(checks.check_split_heads, lambda x: x):
        multihead.split_heads(torch.zeros(1, 2, 4), 2)
