"""A corpus of realistic wrong answers, written as students write them (not derived from the
checks' own variants), for the function exercises of notebooks 01-09: every one fails its
visible check, and its message names the mistake it made (the fragment), never only "wrong
values". Measured when the corpus was written: 33 of 49 named, one passed; the mechanisms that
name the rest are in the checks: the softmax over any wrong axis, properties of the result (rows that
are distributions, -inf where masked, zero probability outside the top k), variants matched
on every value an answer gives, and error hints that state the shapes or match the error.
The class exercises' mistakes are in the per-notebook tests (test_nb04_encoder.py, ...).
"""
import math
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from course_lib import checks

INF = float("-inf")


@dataclass(frozen=True)
class Mistake:
    check: Callable
    what: str
    named: str      # a fragment of the message that names this mistake
    answer: Callable


def softmax_scaled(s, d):
    return torch.softmax(s / math.sqrt(d), -1)


def attention(q, k, v, mask=None, scores_of=None, weights_on=None, scale=None, mask_after=False, swap=False):
    """Attention as a student writes it; each argument is one mistake."""
    s = q @ (k if scores_of is None else scores_of).mT
    if mask is not None and not mask_after:
        s = s.masked_fill(~mask, INF)
    w = softmax_scaled(s, scale or q.shape[-1])
    if mask is not None and mask_after:
        w = w.masked_fill(~mask, 0.0)
    out = w @ (weights_on if weights_on is not None else v)
    return (w, out) if swap else (out, w)


def encoding(length, d, interleave=True, swap=False, use_i=False, divide=True, first=0):
    """The sinusoidal table as a student writes it; the defaults make it right."""
    pos = torch.arange(first, first + length)[:, None].float()
    two_i = torch.arange(0, d, 2).float()
    freq = 10000 ** ((two_i / 2 if use_i else two_i) / d)
    angle = pos / freq if divide else pos * freq
    sin, cos = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
    if not interleave:
        return torch.cat([sin, cos], -1)
    pe = torch.zeros(length, d)
    pe[:, 0::2], pe[:, 1::2] = sin, cos
    return pe


def next_token_probs(logits, temperature=1.0, top_k=None, multiply=False, after=False, fill=INF, drop_kth=False,
                     zero_after=False):
    """Temperature and top-k as a student writes them; each keyword after top_k is one mistake."""
    if not after:
        logits = logits * temperature if multiply else logits / temperature
    if zero_after:
        p = logits.softmax(-1)
        return p.masked_fill(p < p.topk(top_k, -1).values[..., -1:], 0.0)
    if top_k is not None:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits <= kth if drop_kth else logits < kth, fill)
    return logits.softmax(-1) / temperature if after else logits.softmax(-1)


def top_p(logits, p, crossing_dropped=False, sorted_out=False, ascending=False, of_logits=False):
    """Nucleus filtering as a student writes it; each keyword is one mistake."""
    srt, order = logits.sort(-1, descending=not ascending)
    shares = srt if of_logits else srt.softmax(-1)
    cum = shares.cumsum(-1)
    drop = cum > p if crossing_dropped else cum - shares > p
    if sorted_out:
        return srt.masked_fill(drop, INF)
    return logits.masked_fill(drop.scatter(-1, order, drop), INF)


def window_mask(n, w, causal=False, strict=False, no_abs=False, upper=False):
    """The sliding-window mask as a student writes it; each keyword is one mistake."""
    offset = torch.arange(n)[:, None] - torch.arange(n)
    distance = offset if no_abs else offset.abs()
    band = distance < w if strict else distance <= w
    if causal:
        ones = torch.ones(n, n, dtype=torch.bool)
        band = band & (ones.triu() if upper else ones.tril())
    return band


def linear(q, k, v, causal=False, normalize=True, phi=lambda x: F.elu(x) + 1, honour_causal=True):
    """Linear attention as a student writes it; each keyword is one mistake."""
    q, k = phi(q), phi(k)
    if causal and honour_causal:
        kv = torch.einsum("...nd,...ne->...nde", k, v).cumsum(-3)
        num = torch.einsum("...nd,...nde->...ne", q, kv)
        den = torch.einsum("...nd,...nd->...n", q, k.cumsum(-2))[..., None]
    else:
        num = q @ (k.mT @ v)
        den = q @ k.sum(-2, keepdim=True).mT
    return num / den if normalize else num


def smoothed(logits, target, smoothing, pad, probabilities=False):
    vocab = logits.shape[-1]
    q = (1 - smoothing) * F.one_hot(target, vocab) + smoothing / vocab
    log_p = logits.softmax(-1) if probabilities else logits.log_softmax(-1)
    return -(q * log_p).sum(-1)[target != pad].mean()


def rate(step, d_model, warmup, d_exp=-0.5, s_exp=-0.5, w_exp=-1.5):
    s = max(step, 1)
    return d_model ** d_exp * min(s ** s_exp, s * warmup ** w_exp)


def only_position_zero(fn, x):
    changed = torch.cat([x[:, :1], torch.randn_like(x[:, 1:])], 1)
    return torch.allclose(fn(x)[:, :1], fn(changed)[:, :1])


CORPUS = [
    # 01
    Mistake(checks.check_attention_scores, "k.T on batched tensors", "k.T reverses every axis", lambda q, k: q @ k.T),
    Mistake(checks.check_attention_scores, "transpose(1, 2) on 4-D inputs", "k.transpose(1, 2) picks the wrong ones",
            lambda q, k: q @ k.transpose(1, 2)),
    Mistake(checks.check_attention_scores, "elementwise q * k", "a matrix product of q", lambda q, k: q * k),
    Mistake(checks.check_attention_scores, "scaled already", "don't scale here",
            lambda q, k: q @ k.mT / math.sqrt(q.shape[-1])),
    Mistake(checks.check_scaled_softmax, "softmax over dim 0", "wrong axis, dim=0 (the batch axis)",
            lambda s, d: torch.softmax(s / math.sqrt(d), 0)),
    Mistake(checks.check_scaled_softmax, "scaled after the softmax", "scaled after the softmax",
            lambda s, d: torch.softmax(s, -1) / math.sqrt(d)),
    Mistake(checks.check_scaled_softmax, "multiplied by sqrt(d_k)", "multiplied by sqrt(d_k)",
            lambda s, d: torch.softmax(s * math.sqrt(d), -1)),
    Mistake(checks.check_scaled_softmax, "sigmoid for softmax", "must be >= 0 and sum to 1",
            lambda s, d: torch.sigmoid(s / math.sqrt(d))),
    Mistake(checks.check_apply_mask, "multiplied by the mask", "must become -inf, not 0", lambda s, m: s * m),
    Mistake(checks.check_apply_mask, "-1 for -inf", "a finite fill still gives those keys weight",
            lambda s, m: s.masked_fill(~m, -1.0)),
    Mistake(checks.check_apply_mask, "torch.where the wrong way round", "wrong polarity",
            lambda s, m: torch.where(m, INF, s)),
    Mistake(checks.check_attention, "masked after the softmax", "masked after the softmax",
            lambda q, k, v, mask=None: attention(q, k, v, mask, mask_after=True)),
    Mistake(checks.check_attention, "scores with v, output with k", "follow the shapes",
            lambda q, k, v, mask=None: attention(q, k, v, mask, scores_of=v, weights_on=k)),
    Mistake(checks.check_attention, "returns (weights, output)", "the contract's order is (output, weights)",
            lambda q, k, v, mask=None: attention(q, k, v, mask, swap=True)),
    Mistake(checks.check_attention, "scaled by d_v", "scaled by sqrt(d_v)",
            lambda q, k, v, mask=None: attention(q, k, v, mask, scale=v.shape[-1])),
    # 02
    Mistake(checks.check_split_heads, "reshape straight to (b, h, s, d)", "heads taken in the wrong order",
            lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1)),
    Mistake(checks.check_split_heads, "view without the transpose", "forgot the transpose",
            lambda x, h: x.view(x.shape[0], x.shape[1], h, -1)),
    Mistake(checks.check_split_heads, "heads from the wrong end", "contiguous block of d_head features",
            lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2)),
    Mistake(checks.check_merge_heads, "reshape without the transpose", "heads merged in the wrong order",
            lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
    Mistake(checks.check_merge_heads, "view after the transpose", "not contiguous in memory",
            lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1)),
    Mistake(checks.check_merge_heads, "sum over the heads", "should have shape (2, 3, 8)", lambda x: x.sum(1)),
    # 03
    Mistake(checks.check_sinusoidal_encoding, "i instead of 2i", "i instead of 2i",
            lambda n, d, **kw: encoding(n, d, use_i=True)),
    Mistake(checks.check_sinusoidal_encoding, "sin and cos concatenated", "not concatenated",
            lambda n, d, **kw: encoding(n, d, interleave=False)),
    Mistake(checks.check_sinusoidal_encoding, "cos on the even columns", "sin and cos are swapped",
            lambda n, d, **kw: encoding(n, d, swap=True)),
    Mistake(checks.check_sinusoidal_encoding, "multiplied by the frequency", "it should be divided by it",
            lambda n, d, **kw: encoding(n, d, divide=False)),
    Mistake(checks.check_sinusoidal_encoding, "positions from 1", "positions start at 0",
            lambda n, d, **kw: encoding(n, d, first=1)),
    # 05
    Mistake(checks.check_is_causal, "compares position 0 only", "not only t = 0", only_position_zero),
    Mistake(checks.check_is_causal, "always True", "missed a leak from the next token", lambda fn, x: True),
    # 06
    Mistake(checks.check_rate, "warmup ** 1.5", "not warmup ** 1.5", lambda s, d, w: rate(s, d, w, w_exp=1.5)),
    Mistake(checks.check_rate, "step ** 0.5", "not step ** 0.5", lambda s, d, w: rate(s, d, w, s_exp=0.5)),
    Mistake(checks.check_rate, "d_model ** 0.5", "raised to -0.5, not 0.5", lambda s, d, w: rate(s, d, w, d_exp=0.5)),
    Mistake(checks.check_label_smoothing_loss, "F.cross_entropy without ignore_index",
            "the very thing this exercise asks you to write",
            lambda lg, t, s, p: F.cross_entropy(lg, t, label_smoothing=s)),
    Mistake(checks.check_label_smoothing_loss, "softmax for log_softmax", "not probabilities (softmax)",
            lambda lg, t, s, p: smoothed(lg, t, s, p, probabilities=True)),
    # 08
    Mistake(checks.check_next_token_probs, "temperature after the softmax", "applied after the softmax",
            lambda lg, t=1.0, top_k=None: next_token_probs(lg, t, top_k, after=True)),
    Mistake(checks.check_next_token_probs, "multiplied by the temperature", "the temperature multiplies the logits",
            lambda lg, t=1.0, top_k=None: next_token_probs(lg, t, top_k, multiply=True)),
    Mistake(checks.check_next_token_probs, "top-k with <=", "the k-th largest logit removed too",
            lambda lg, t=1.0, top_k=None: next_token_probs(lg, t, top_k, drop_kth=True)),
    Mistake(checks.check_next_token_probs, "top-k fills 0", "the tokens outside the top k still get probability",
            lambda lg, t=1.0, top_k=None: next_token_probs(lg, t, top_k, fill=0.0)),
    Mistake(checks.check_next_token_probs, "top-k zeroed after the softmax", "zeroed after the softmax do not sum to 1",
            lambda lg, t=1.0, top_k=None: next_token_probs(lg, t, top_k, zero_after=top_k is not None)),
    Mistake(checks.check_top_p_filter, "the crossing token dropped", "takes the total past p was dropped",
            lambda lg, p: top_p(lg, p, crossing_dropped=True)),
    Mistake(checks.check_top_p_filter, "left in sorted order", "in sorted order",
            lambda lg, p: top_p(lg, p, sorted_out=True)),
    Mistake(checks.check_top_p_filter, "ascending sort", "descending=True", lambda lg, p: top_p(lg, p, ascending=True)),
    Mistake(checks.check_top_p_filter, "running total of logits", "add up probabilities",
            lambda lg, p: top_p(lg, p, of_logits=True)),
    # 09
    Mistake(checks.check_sliding_window_mask, "< window", "you used < window",
            lambda n, w, causal=False: window_mask(n, w, causal, strict=True)),
    Mistake(checks.check_sliding_window_mask, "causal ignored", "causal=True is ignored: a query must not see",
            lambda n, w, causal=False: window_mask(n, w)),
    Mistake(checks.check_sliding_window_mask, "causal as triu", "hides the past instead of the future",
            lambda n, w, causal=False: window_mask(n, w, causal, upper=True)),
    Mistake(checks.check_sliding_window_mask, "no abs()", "without abs()",
            lambda n, w, causal=False: window_mask(n, w, causal, no_abs=True)),
    Mistake(checks.check_linear_attention, "no normalizer", "the normalizer is missing",
            lambda q, k, v, causal=False: linear(q, k, v, causal, normalize=False)),
    Mistake(checks.check_linear_attention, "relu feature map", "a normalizer that is 0",
            lambda q, k, v, causal=False: linear(q, k, v, causal, phi=F.relu)),
    Mistake(checks.check_linear_attention, "causal ignored", "causal=True is ignored: query i may only use",
            lambda q, k, v, causal=False: linear(q, k, v, causal, honour_causal=False)),
]
GENERIC = "has the right shape but wrong values"  # the fallback: where the values differ, not why


@pytest.mark.filterwarnings("ignore:The use of `x.T`")  # k.T on batched tensors: the mistake itself
@pytest.mark.parametrize("mistake", CORPUS, ids=[f"{m.check.__name__}-{m.what}" for m in CORPUS])
def test_the_visible_check_names_the_mistake(mistake):
    with pytest.raises(checks.CheckFailed) as failed:
        mistake.check(mistake.answer)
    message = str(failed.value)
    assert mistake.named in message, message
    assert GENERIC not in message, message
