"""course_lib.checks.nb08_gpt: each check accepts a correct answer and names each mistake it claims to detect."""
import pytest
import torch
import torch.nn.functional as F
from student_copies import student_copy

from course_lib import checks, sampling
from course_lib.multihead import merge_heads, split_heads

top_k_filter, top_p_filter = student_copy(sampling.top_k_filter), student_copy(sampling.top_p_filter)


def probs(logits, t, k, scale=lambda lg, t: lg / t):
    """Next-token probabilities; ``scale`` applies the temperature."""
    logits = scale(logits, t)
    return (top_k_filter(logits, k) if k is not None else logits).softmax(-1)


def smallest(lg, t, k):
    """Keeps the k smallest logits instead of the k largest."""
    if k is None:
        return probs(lg, t, k)
    keep = lg <= lg.topk(k, dim=-1, largest=False).values[..., -1:]
    return (lg / t).masked_fill(~keep, float("-inf")).softmax(-1)


def test_next_token_probs_check_accepts_the_formula():
    checks.check_next_token_probs(probs)


@pytest.mark.parametrize("student, fragment", [
    (lambda lg, t, k: probs(lg, t, k, scale=lambda lg, t: lg * t), "multiplies"),
    (lambda lg, t, k: probs(lg, 1.0, k), "temperature is missing"),
    (lambda lg, t, k: top_k_filter(lg / t, k) if k else lg / t, "not the logits"),
    (smallest, "k smallest"),
    (lambda lg, t, k: probs(lg, t, k + 1 if k else None), "exactly the top"),
    (lambda lg, t, k: (lg / t).softmax(-1) * torch.isfinite(top_k_filter(lg, k or lg.shape[-1])), "do not sum to 1"),
    (lambda lg, t, k: (lg / t).softmax(-1), "top-k is missing"),
    (lambda lg, t, k: probs(lg, t, k or 4), "top_k=None"),
])
def test_next_token_probs_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_next_token_probs, student, fragment)


def nucleus(logits, p, descending=True, strict=False, unsort=True, axis=-1, fill=float("-inf")):
    """A top-p filter written out; the defaults make it right, each flag is one mistake."""
    sorted_logits, order = logits.sort(dim=-1, descending=descending)
    sorted_probs = sorted_logits.softmax(axis)
    cumulative = sorted_probs.cumsum(-1)
    remove = cumulative > p if strict else cumulative - sorted_probs >= p
    if not unsort:
        return sorted_logits.masked_fill(remove, fill)
    return logits.masked_fill(remove.scatter(-1, order, remove), fill)


@pytest.mark.parametrize("student", [top_p_filter, nucleus], ids=["course_lib", "student"])
def test_top_p_filter_check_accepts_a_right_filter(student):
    checks.check_top_p_filter(student)


@pytest.mark.parametrize("student, fragment", [
    (lambda lg, p: nucleus(lg, p, strict=True), "takes the total past p"),
    (lambda lg, p: nucleus(lg, p, descending=False), "descending=True"),
    (lambda lg, p: nucleus(lg, p, unsort=False), "original token order"),
    (lambda lg, p: lg.softmax(-1).masked_fill(torch.isinf(top_p_filter(lg, p)), 0.0), "not probabilities"),
    (lambda lg, p: nucleus(lg, p, fill=0.0), "not 0"),
    (lambda lg, p: nucleus(lg, p, axis=0), "last axis"),
    (lambda lg, p: nucleus(lg, p) if p > 0.01 else torch.full_like(lg, float("-inf")), "always stay"),
])
def test_top_p_filter_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_top_p_filter, student, fragment)


def attend(attn, x, past_k, past_v, order="past first", mask=None, w_o=True, use_past=True):
    """One step with a KV cache written out; the defaults make it right, each flag is one mistake."""
    q, k, v = (split_heads(w(x), attn.num_heads) for w in (attn.w_q, attn.w_k, attn.w_v))
    if use_past:
        pair = ((past_k, k), (past_v, v)) if order == "past first" else ((k, past_k), (v, past_v))
        k, v = torch.cat(pair[0], dim=2), torch.cat(pair[1], dim=2)
    out = merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=mask == "causal"))
    return (attn.w_o(out) if w_o else out), k, v


def test_attend_with_cache_check_accepts_a_right_step():
    checks.check_attend_with_cache(attend)


@pytest.mark.parametrize("student, fragment", [
    (lambda *a: attend(*a, order="new first"), "goes after the cached ones"),
    (lambda *a: attend(*a, mask="causal"), "hides the cache"),
    (lambda *a: attend(*a, w_o=False), "W^O"),
    (lambda attn, x, pk, pv: (attend(attn, x, pk, pv, use_past=False)[0],) + attend(attn, x, pk, pv)[1:],
     "only to itself"),
    (lambda attn, x, pk, pv: attend(attn, x, pk, pv, use_past=False), "whole cache"),
    (lambda attn, x, pk, pv: attend(attn, x, pk, pv)[:2], "tuple (out, k, v)"),
])
def test_attend_with_cache_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_attend_with_cache, student, fragment)
