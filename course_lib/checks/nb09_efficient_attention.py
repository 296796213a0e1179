"""Checks of notebook 09_efficient_attention: the sliding-window mask, linear attention."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .. import efficient
from ..attention import causal_mask, scaled_dot_product_attention
from .engine import CheckFailed, check_close, exercise, qkv


@exercise(forbid={"course_lib.efficient.sliding_window_mask": efficient.sliding_window_mask})
def check_sliding_window_mask(sliding_window_mask: Callable[..., Tensor]) -> None:
    """Notebook 09: ``sliding_window_mask(seq_len, window, causal=False)`` returns the (seq_len, seq_len)
    bool mask, True where |i - j| <= window, and only j <= i when ``causal``."""
    reference = efficient.sliding_window_mask
    for seq, window in ((7, 2), (6, 0), (5, 9)):
        pos = torch.arange(seq)
        offset = pos[:, None] - pos[None, :]  # i - j
        band = lambda w: offset.abs() <= w
        past, future = offset >= 0, offset <= 0
        for causal in (False, True):
            what = f"sliding_window_mask({seq}, {window}{', causal=True' if causal else ''})"
            actual = sliding_window_mask(seq, window, causal=True) if causal else sliding_window_mask(seq, window)
            if isinstance(actual, Tensor) and actual.dtype != torch.bool:
                raise CheckFailed(f"{what} should be a torch.bool tensor (True = may attend), got {actual.dtype}: "
                                  "a comparison such as (i - j).abs() <= window gives bools")
            expected = reference(seq, window, causal)
            keep = past if causal else torch.ones_like(past)
            check_close(actual, expected, what, {
                "the mask has the wrong polarity: True means 'may attend', so True inside the window": ~expected,
                "window off by one: `window` positions on each side are visible, |i - j| <= window "
                "(you used < window)": band(window - 1) & keep,
                "window off by one: one position too many on each side; |i - j| <= window": band(window + 1) & keep,
                "causal=True is ignored: a query must not see the keys after it (j > i)": band(window),
                "the causal mask hides the past instead of the future: keep the keys j <= i": band(window) & future,
                "with causal=True the window still applies: keys i - window <= j <= i, not all of 0..i":
                    past & torch.ones_like(band(window)),
                "with causal=False the window reaches both ways: |i - j| <= window, past and future":
                    band(window) & past,
                "the diagonal is missing: every query may attend to itself (i == j)": expected & (offset != 0),
                "the distance is |i - j|: without abs() every key before the query counts as inside the window":
                    (offset <= window) & keep,
                "the distance is |i - j|: without abs() every key after the query counts as inside the window":
                    (-offset <= window) & keep,
            })


@exercise(forbid={"course_lib.efficient.linear_attention": efficient.linear_attention})
def check_linear_attention(linear_attention: Callable[..., Tensor]) -> None:
    """Notebook 09: ``linear_attention(q, k, v, causal=False)`` equals course_lib.efficient's
    (feature map elu(x) + 1, normalized, running sums when causal)."""
    elu_feature_map, reference = efficient.elu_feature_map, efficient.linear_attention
    q, k, v = qkv(2, 6, 6, 4, 3, seed=12)
    d_k = q.shape[-1]

    def quadratic(causal: bool, phi_q=elu_feature_map, phi_k=elu_feature_map, normalize: str = "same") -> Tensor:
        """The formula computed through the (seq, seq) kernel matrix, right or with one mistake."""
        a = phi_q(q) @ phi_k(k).transpose(-2, -1)
        num = (a.tril() if causal else a) @ v
        if normalize == "none":
            return num
        den = a.sum(-1, keepdim=True) if normalize == "all keys" else (a.tril() if causal else a).sum(-1, keepdim=True)
        return num / den

    elu = lambda x: torch.nn.functional.elu(x)
    for causal in (False, True):
        what = f"linear_attention(q, k, v{', causal=True' if causal else ''})"
        actual = linear_attention(q.clone(), k.clone(), v.clone(), causal=True) if causal else \
            linear_attention(q.clone(), k.clone(), v.clone())
        mistakes = {
            "the feature map is missing: apply phi(x) = elu(x) + 1 to q and k":
                quadratic(causal, phi_q=lambda x: x, phi_k=lambda x: x),
            "phi(x) = elu(x) + 1: the + 1 is missing (it keeps the features positive)":
                quadratic(causal, phi_q=elu, phi_k=elu),
            "the feature map must be applied to the keys too: phi(k)": quadratic(causal, phi_k=lambda x: x),
            "the feature map must be applied to the queries too: phi(q)": quadratic(causal, phi_q=lambda x: x),
            "the feature map is elu(x) + 1, not exp(x)": quadratic(causal, phi_q=torch.exp, phi_k=torch.exp),
            "no 1/sqrt(d_k) scaling in linear attention: phi(q), not phi(q / sqrt(d_k))":
                quadratic(causal, phi_q=lambda x: elu_feature_map(x / math.sqrt(d_k))),
            "the normalizer is missing: divide by phi(q_i) . sum_j phi(k_j)": quadratic(causal, normalize="none"),
            "this is softmax attention; linear attention replaces exp(q . k / sqrt(d_k)) by phi(q) . phi(k)":
                scaled_dot_product_attention(q, k, v, causal_mask(6) if causal else None)[0],
        }
        if causal:
            mistakes |= {
                "causal=True is ignored: query i may only use the keys j <= i (running sums, cumsum over seq)":
                    quadratic(False),
                "the normalizer must be a running sum too: sum_{j <= i} phi(k_j), not over all keys":
                    quadratic(True, normalize="all keys"),
            }
        else:
            mistakes["causal=False must use all the keys; you used only j <= i"] = quadratic(True)
        check_close(actual, reference(q, k, v, causal, eps=0.0), what, mistakes, atol=1e-5)
    # cross-attention: as many outputs as queries, keys and values of another length
    q, k, v = qkv(2, 3, 7, 4, 5, seed=13)
    check_close(linear_attention(q, k, v), reference(q, k, v, eps=0.0),
                "linear_attention(q, k, v) with 3 queries and 7 keys (d_k = 4, d_v = 5)", atol=1e-5)
    _check_no_score_matrix(linear_attention)


def _check_no_score_matrix(linear_attention: Callable[..., Tensor], seq: int = 1024, d: int = 8) -> None:
    """The contract's "do not build a (seq_q, seq_k) matrix", measured: the peak of torch's CPU
    allocations during one call stays under a quarter of one such matrix (right answers, causal
    ones included, hold about (seq, d_k, d_v), 16x less at these sizes)."""
    q, k, v = qkv(1, seq, seq, d, d, seed=14)
    matrix = seq * seq * q.element_size()
    for causal in (False, True):
        peak = efficient.peak_memory(lambda: linear_attention(q, k, v, causal=causal), "cpu")
        if peak > matrix / 4:
            raise CheckFailed(
                f"linear_attention(q, k, v{', causal=True' if causal else ''}) with seq = {seq} held "
                f"{peak / 2**20:.1f} MiB at its peak, while one (seq_q, seq_k) matrix is {matrix / 2**20:.1f} MiB: "
                "the contract asks you not to build it. Compute phi(k)^T v first, a (d_k, d_v) matrix"
                + (" (running sums with cumsum when causal)" if causal else "") + ", then apply phi(q) to it")
