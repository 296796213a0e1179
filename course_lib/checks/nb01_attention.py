"""Checks of notebook 01_attention: attention scores, the scaled softmax, masking and attention."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attention import scaled_dot_product_attention
from .engine import CheckFailed, check_close, exercise, not_distributions, on_error, qkv, random_mask

_LAST_TWO_AXES = ("the scores are a matrix product of q (..., seq_q, d_k) with k transposed on its last two "
                  "axes, k.transpose(-2, -1) (..., d_k, seq_k): on batched inputs k.T reverses every axis and "
                  "k.transpose(1, 2) picks the wrong ones when there is a heads axis")
_SHAPES = ("follow the shapes: scores = q (..., seq_q, d_k) @ k.transpose(-2, -1) (..., d_k, seq_k), "
           "weights (..., seq_q, seq_k) @ v (..., seq_k, d_v) -> output (..., seq_q, d_v)")
_BROADCAST = ("the mask may have size-1 axes that broadcast, (batch, 1, seq_k) or (batch, 1, seq_q, seq_k): "
              "use scores.masked_fill(~mask, float('-inf')), which broadcasts; scores[~mask] does not")


@exercise()
def check_attention_scores(attention_scores: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``attention_scores(q, k)`` must return q @ k^T, shape (..., seq_q, seq_k)."""
    for heads, where in ((None, ""), (7, " with a heads axis, (batch, heads, seq, d_k)")):
        q, k, _ = qkv(heads=heads)
        expected = q @ k.transpose(-2, -1)
        with on_error(_LAST_TWO_AXES):
            actual = attention_scores(q.clone(), k.clone())
        check_close(actual, expected, f"attention_scores(q, k){where}", {
            "you computed k @ q^T; the scores are (seq_q, seq_k): q @ k.transpose(-2, -1)":
                k @ q.transpose(-2, -1),
            "don't scale here; the 1/sqrt(d_k) belongs to the next step": expected / math.sqrt(q.shape[-1]),
            "don't apply softmax here; this step returns the raw scores": expected.softmax(-1),
        })


@exercise()
def check_scaled_softmax(scaled_softmax: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 01: ``scaled_softmax(scores, d_k)`` must return softmax(scores / sqrt(d_k)) over the keys."""
    for heads, where in ((None, ""), (7, " of (batch, heads, seq_q, seq_k) scores")):
        q, k, _ = qkv(heads=heads)
        d_k = q.shape[-1]
        scores = q @ k.transpose(-2, -1)
        scaled = scores / math.sqrt(d_k)
        axes = ("batch", "queries") if heads is None else ("batch", "heads", "queries")
        wrong_axes = {f"softmax over the wrong axis, dim={dim} (the {axis} axis): each query's weights over the "
                      "keys must sum to 1, so the softmax runs over the last axis, dim=-1": scaled.softmax(dim)
                      for dim, axis in enumerate(axes)}
        check_close(scaled_softmax(scores.clone(), d_k), scaled.softmax(-1),
                    f"scaled_softmax(scores, d_k={d_k}){where}", wrong_axes | {
            "missing the 1/sqrt(d_k) scaling before the softmax": scores.softmax(-1),
            "divided by d_k instead of sqrt(d_k)": (scores / d_k).softmax(-1),
            "scaled by the number of keys (scores.shape[-1]); use the d_k argument: scores / math.sqrt(d_k)":
                (scores / math.sqrt(scores.shape[-1])).softmax(-1),
            "scaled after the softmax; divide the scores by sqrt(d_k) first": scores.softmax(-1) / math.sqrt(d_k),
            "multiplied by sqrt(d_k); divide the scores by it": (scores * math.sqrt(d_k)).softmax(-1),
            "the softmax is missing": scaled,
        }, broken={"each query's weights over the keys must be >= 0 and sum to 1: that is what a softmax "
                   "over the last axis (dim=-1) gives": not_distributions})


@exercise()
def check_apply_mask(apply_mask: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``apply_mask(scores, mask)`` puts -inf where ``mask`` is False; the mask broadcasts."""
    q, k, _ = qkv()
    scores = q @ k.transpose(-2, -1)
    padding = random_mask(2, 1, 5, seed=3)
    for mask, where in ((random_mask(), ""), (padding, " with a (batch, 1, seq_k) padding mask")):
        with on_error(_BROADCAST, (RuntimeError, IndexError)):
            out = apply_mask(scores.clone(), mask.clone())
        check_close(out, scores.masked_fill(~mask, float("-inf")), f"apply_mask(scores, mask){where}", {
            "the mask has the wrong polarity: True means 'may attend', so fill where mask is False (~mask)":
                scores.masked_fill(mask, float("-inf")),
            "masked scores must become -inf, not 0: exp(0) = 1 still gives the key weight":
                scores.masked_fill(~mask, 0.0),
            "the softmax belongs to the next step; return the masked scores":
                scores.masked_fill(~mask, float("-inf")).softmax(-1),
        }, broken={
            "the masked scores must become -inf (exp(-inf) = 0); a finite fill still gives those keys weight":
                lambda out: bool((out.expand_as(scores)[~mask.expand_as(scores)] > -1e4).any()),
            "the scores where the mask is True must stay as they are":
                lambda out: not torch.equal(out.expand_as(scores)[mask.expand_as(scores)],
                                            scores[mask.expand_as(scores)]),
        })


@exercise(forbid={"course_lib.attention.scaled_dot_product_attention": scaled_dot_product_attention,
                  "torch.nn.functional.scaled_dot_product_attention": F.scaled_dot_product_attention})
def check_attention(attention: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 01: ``attention(q, k, v, mask=None)`` returns (output, weights), for 3-D and 4-D inputs."""
    q3, k3, v3 = qkv()
    q4, k4, v4 = qkv(heads=7, seed=2)
    cases = [(q3, k3, v3, None, ""), (q3, k3, v3, random_mask(), " with a mask"),
             (q4, k4, v4, random_mask(2, 3, 5, seed=4).unsqueeze(1),
              " with a heads axis and a (batch, 1, seq_q, seq_k) mask")]
    for q, k, v, m, where in cases:
        d_k = q.shape[-1]
        with on_error(_SHAPES if m is None else f"{_SHAPES}; {_BROADCAST}", (RuntimeError, IndexError)):
            result = attention(q.clone(), k.clone(), v.clone(), mask=None if m is None else m.clone())
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckFailed(f"attention(q, k, v, mask){where} should return a tuple (output, weights)"
                              + (" (did you forget to `return` it?)" if result is None else ""))
        out, weights = result
        exp_out, exp_w = scaled_dot_product_attention(q, k, v, m)
        if all(isinstance(t, Tensor) for t in result) and (out.shape, weights.shape) == (exp_w.shape, exp_out.shape):
            raise CheckFailed(f"attention(q, k, v, mask){where} returned (weights, output): "
                              "the contract's order is (output, weights)")
        scores = q @ k.transpose(-2, -1)
        fill = (lambda s: s) if m is None else (lambda s: s.masked_fill(~m, float("-inf")))
        wrong_w = {
            "missing the 1/sqrt(d_k) scaling": fill(scores).softmax(-1),
            "divided by d_k instead of sqrt(d_k)": fill(scores / d_k).softmax(-1),
            "scaled by sqrt(d_v), v's last axis; the scale is sqrt(d_k) = sqrt(q.shape[-1])":
                fill(scores / math.sqrt(v.shape[-1])).softmax(-1),
            "softmax over the wrong axis (use dim=-1, over the keys)":
                fill(scores / math.sqrt(d_k)).softmax(-2).nan_to_num(0.0),
        }
        if m is not None:
            wrong_w |= {
                "the mask has the wrong polarity: True means 'may attend'":
                    scaled_dot_product_attention(q, k, v, ~m)[1],
                "masked after the softmax: the rows no longer sum to 1; put -inf on the scores where "
                "the mask is False, then take the softmax": (scores / math.sqrt(d_k)).softmax(-1).masked_fill(~m, 0.0),
                "masked scores must become -inf, not 0: exp(0) = 1 still gives the key weight":
                    (scores / math.sqrt(d_k)).masked_fill(~m, 0.0).softmax(-1),
            }
        check_close(weights, exp_w, f"the weights{where}", wrong_w)
        check_close(out, exp_out, f"the output{where}", {
            "the output should be weights @ v, not weights @ k": exp_w @ k,
        })
