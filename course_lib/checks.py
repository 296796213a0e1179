"""Student-facing checks used by the notebooks' visible tests.

Each check runs the student's code on small random inputs, compares the result with
course_lib's reference and, when they differ, tries the common wrong versions so that
the message can name the likely mistake instead of printing two tensors.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .attention import scaled_dot_product_attention
from .multihead import merge_heads, split_heads

_NEG_INF_BELOW = -1e8  # a student's -1e9 or finfo.min counts as -inf


class CheckFailed(AssertionError):
    """A visible check failed; the message says what was expected and the likely mistake."""


def _normalized(t: Tensor) -> Tensor:
    t = t.detach().to(torch.float64)
    return t.masked_fill(t < _NEG_INF_BELOW, float("-inf"))


def _close(a: Tensor, b: Tensor, atol: float) -> bool:
    return a.shape == b.shape and torch.allclose(_normalized(a), _normalized(b), atol=atol, rtol=1e-4)


def check_close(actual, expected: Tensor, what: str, mistakes: dict[str, Tensor] | None = None,
                atol: float = 1e-5) -> None:
    """Raise CheckFailed unless ``actual`` is a tensor equal to ``expected``.

    ``mistakes`` maps a message to the value that the mistake it names would produce.
    """
    if not isinstance(actual, Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(actual).__name__}"
                          + (" (did you forget to `return` it?)" if actual is None else ""))
    for message, wrong in (mistakes or {}).items():
        if _close(actual, wrong, atol) and not _close(actual, expected, atol):
            raise CheckFailed(f"{what} is not right: {message}")
    if actual.shape != expected.shape:
        raise CheckFailed(f"{what} should have shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        raise CheckFailed(f"{what} contains NaN: a row where everything is masked out? "
                          "softmax of all -inf is NaN")
    if not _close(actual, expected, atol):
        diff = (_normalized(actual) - _normalized(expected)).abs().nan_to_num(0.0).max().item()
        raise CheckFailed(f"{what} has the right shape but wrong values (largest difference {diff:.3g})")


def _qkv(batch: int = 2, seq_q: int = 3, seq_k: int = 5, d_k: int = 4, d_v: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, seq_q, d_k, generator=g), torch.randn(batch, seq_k, d_k, generator=g),
            torch.randn(batch, seq_k, d_v, generator=g))


def _mask(batch: int = 2, seq_q: int = 3, seq_k: int = 5, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, seq_q, seq_k, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    return mask


def check_attention_scores(attention_scores: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``attention_scores(q, k)`` must return q @ k^T, shape (batch, seq_q, seq_k)."""
    q, k, _ = _qkv()
    expected = q @ k.transpose(-2, -1)
    check_close(attention_scores(q, k), expected, "attention_scores(q, k)", {
        "you computed k @ q^T; the scores are (seq_q, seq_k): q @ k.transpose(-2, -1)":
            k @ q.transpose(-2, -1),
        "don't scale here; the 1/sqrt(d_k) belongs to the next step": expected / math.sqrt(q.shape[-1]),
        "don't apply softmax here; this step returns the raw scores": expected.softmax(-1),
    })


def check_scaled_softmax(scaled_softmax: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 01: ``scaled_softmax(scores, d_k)`` must return softmax(scores / sqrt(d_k)) over the keys."""
    q, k, _ = _qkv()
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    check_close(scaled_softmax(scores, d_k), (scores / math.sqrt(d_k)).softmax(-1),
                "scaled_softmax(scores, d_k)", {
        "softmax over the wrong axis: each query's weights over the keys must sum to 1 (dim=-1)":
            (scores / math.sqrt(d_k)).softmax(-2),
        "missing the 1/sqrt(d_k) scaling before the softmax": scores.softmax(-1),
        "divided by d_k instead of sqrt(d_k)": (scores / d_k).softmax(-1),
        "scaled after the softmax; divide the scores by sqrt(d_k) first": scores.softmax(-1) / math.sqrt(d_k),
        "the softmax is missing": scores / math.sqrt(d_k),
    })


def check_apply_mask(apply_mask: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``apply_mask(scores, mask)`` puts -inf where ``mask`` is False."""
    q, k, _ = _qkv()
    scores, mask = q @ k.transpose(-2, -1), _mask()
    out = apply_mask(scores.clone(), mask.clone())
    check_close(out, scores.masked_fill(~mask, float("-inf")), "apply_mask(scores, mask)", {
        "the mask has the wrong polarity: True means 'may attend', so fill where mask is False (~mask)":
            scores.masked_fill(mask, float("-inf")),
        "masked scores must become -inf, not 0: exp(0) = 1 still gives the key weight":
            scores.masked_fill(~mask, 0.0),
        "the softmax belongs to the next step; return the masked scores": scores.masked_fill(~mask, float("-inf")).softmax(-1),
    })


def check_attention(attention: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 01: ``attention(q, k, v, mask=None)`` returns (output, weights)."""
    q, k, v = _qkv()
    mask = _mask()
    d_k = q.shape[-1]
    for m in (None, mask):
        result = attention(q, k, v, mask=m)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckFailed("attention(q, k, v, mask) should return a tuple (output, weights)")
        out, weights = result
        exp_out, exp_w = scaled_dot_product_attention(q, k, v, m)
        where = "" if m is None else " with a mask"
        fill = (lambda s: s) if m is None else (lambda s: s.masked_fill(~m, float("-inf")))
        inverted = None if m is None else scaled_dot_product_attention(q, k, v, ~m)[1]
        wrong_w = {
            "missing the 1/sqrt(d_k) scaling": fill(q @ k.transpose(-2, -1)).softmax(-1),
            "softmax over the wrong axis (use dim=-1, over the keys)":
                fill(q @ k.transpose(-2, -1) / math.sqrt(d_k)).softmax(-2).nan_to_num(0.0),
        }
        if inverted is not None:
            wrong_w["the mask has the wrong polarity: True means 'may attend'"] = inverted
        check_close(weights, exp_w, f"the weights{where}", wrong_w)
        check_close(out, exp_out, f"the output{where}", {
            "the output should be weights @ v, not weights @ k": exp_w @ k if k.shape == v.shape else exp_w,
        })


def check_split_heads(split: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 02: ``split_heads(x, num_heads)``: (batch, seq, d_model) -> (batch, heads, seq, d_head)."""
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(2))
    check_close(split(x.clone(), 4), split_heads(x, 4), "split_heads(x, num_heads=4)", {
        "heads taken in the wrong order: reshape to (batch, seq, heads, d_head) first, then "
        "transpose(1, 2); reshaping straight to (batch, heads, seq, d_head) mixes tokens":
            x.reshape(2, 4, 3, 2),
        "forgot the transpose: the result must be (batch, heads, seq, d_head)": x.view(2, 3, 4, 2),
    })


def check_merge_heads(merge: Callable[[Tensor], Tensor]) -> None:
    """Notebook 02: ``merge_heads(x)``: (batch, heads, seq, d_head) -> (batch, seq, heads * d_head)."""
    x = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(3))
    check_close(merge(x.clone()), merge_heads(x), "merge_heads(x)", {
        "heads merged in the wrong order: transpose(1, 2) back to (batch, seq, heads, d_head) "
        "before reshaping to (batch, seq, d_model)": x.reshape(2, 3, 8),
    })


def _copy_to_torch(mha: nn.Module, d_model: int, num_heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref.eval()


def check_multihead(mha_class: type[nn.Module]) -> None:
    """Notebook 02: the student's module equals ``torch.nn.MultiheadAttention`` with the same weights.

    ``mha_class(d_model, num_heads)`` must have Linear layers ``w_q, w_k, w_v, w_o`` and
    ``forward(query, key, value, mask=None) -> (output, weights)``.
    """
    d_model, num_heads = 8, 2
    torch.manual_seed(4)
    mha = mha_class(d_model, num_heads).eval()
    ref = _copy_to_torch(mha, d_model, num_heads)
    g = torch.Generator().manual_seed(5)
    x, mem = torch.randn(2, 3, d_model, generator=g), torch.randn(2, 5, d_model, generator=g)
    mask = _mask(2, 3, 5)
    with torch.no_grad():
        for name, (q, kv, m) in {"self-attention": (x, x, None),
                                 "cross-attention with a mask": (x, mem, mask)}.items():
            result = mha(q, kv, kv, mask=m)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise CheckFailed("forward should return a tuple (output, weights)")
            expected = ref(q, kv, kv, attn_mask=None if m is None else ~m.repeat_interleave(num_heads, 0),
                           need_weights=False)[0]
            heads = scaled_dot_product_attention(
                split_heads(mha.w_q(q), num_heads), split_heads(mha.w_k(kv), num_heads),
                split_heads(mha.w_v(kv), num_heads), None if m is None else m.unsqueeze(1))[0]
            check_close(result[0], expected, f"the {name} output", {
                "the output projection W^O (self.w_o) is missing": merge_heads(heads),
                "heads merged in the wrong order before W^O": mha.w_o(heads.reshape(2, q.shape[1], d_model)),
            })


def check_choice(answer, options: tuple[int, ...], name: str = "answer") -> None:
    """A quiz answer must be one of the option numbers (whether it is right is graded later)."""
    if answer not in options:
        raise CheckFailed(f"{name} should be one of {', '.join(map(str, options))}; got {answer!r}")
