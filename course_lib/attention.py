"""Scaled dot-product attention and its masks (introduced in notebook 01_attention).

One mask convention holds across the course: a boolean tensor where ``True``
means "this query may attend to this key", as in
``torch.nn.functional.scaled_dot_product_attention``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have shape (..., seq, d) with at least 2 dimensions, "
                f"got shape {tuple(t.shape)}"
            )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension d_k: q is {tuple(q.shape)}, "
            f"k is {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same sequence length: k is {tuple(k.shape)} "
            f"(seq_k={k.shape[-2]}), v is {tuple(v.shape)} (seq_k={v.shape[-2]})"
        )


def check_mask(mask: Tensor, seq_q: int, seq_k: int) -> None:
    """Raise ``ValueError`` unless ``mask`` is boolean and broadcasts to (..., seq_q, seq_k)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must be a torch.bool tensor (True = may attend), got {got}; "
            "build one with causal_mask / padding_mask"
        )
    if mask.dim() < 2 or mask.shape[-1] not in (1, seq_k) or mask.shape[-2] not in (1, seq_q):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to "
            f"(..., seq_q={seq_q}, seq_k={seq_k})"
        )


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> Tensor:
    """(seq_len, seq_len) bool mask: position i may attend to positions 0..i."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Mask out padding keys.

    tokens: (batch, seq) token ids. Returns (batch, 1, seq) bool, True at real tokens,
    which broadcasts over the query axis of (batch, seq_q, seq_k) scores.
    """
    return (tokens != pad_id).unsqueeze(-2)


def from_key_padding_mask(key_padding_mask: Tensor) -> Tensor:
    """Convert PyTorch's ``key_padding_mask`` (batch, seq_k), True = ignore, to our (batch, 1, seq_k)."""
    return ~key_padding_mask.bool().unsqueeze(-2)


def to_key_padding_mask(mask: Tensor) -> Tensor:
    """Convert our (batch, 1, seq_k) padding mask back to PyTorch's (batch, seq_k), True = ignore."""
    return ~mask.squeeze(-2)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, written out step by step.

    q: (..., seq_q, d_k), k: (..., seq_k, d_k), v: (..., seq_k, d_v);
    mask: bool, broadcastable to (..., seq_q, seq_k), True = may attend.
    Returns the output (..., seq_q, d_v) and the weights (..., seq_q, seq_k) that were
    applied (after dropout, as torch.nn.MultiheadAttention returns them).
    A query whose keys are all masked gets zero weights and a zero output, not NaN.
    """
    _check_qkv(q, k, v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        check_mask(mask, q.shape[-2], k.shape[-2])
        # softmax over a row of only -inf is NaN: give such rows finite scores here
        # and zero their weights below.
        no_key = ~mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask, float("-inf")).masked_fill(no_key, 0.0)
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
    return weights @ v, weights
