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

from .validation import check_int, check_mask, check_number, check_tensor


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> torch.Size:
    """The scores' leading shape, broadcast from q's, k's and v's; ValueError when they do not fit."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, "... seq d", "float")
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
    try:
        return torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"q, k and v must have broadcastable leading (batch, head) dimensions, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}") from None


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> Tensor:
    """(seq_len, seq_len) bool mask: position i may attend to positions 0..i."""
    check_int("seq_len", seq_len, low=0)
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Mask out padding keys.

    tokens: (batch, seq) token ids. Returns (batch, 1, seq) bool, True at real tokens,
    which broadcasts over the query axis of (batch, seq_q, seq_k) scores.
    """
    check_tensor("tokens", tokens, "batch seq", "integer")
    check_int("pad_id", pad_id)
    return (tokens != pad_id).unsqueeze(-2)


def from_key_padding_mask(key_padding_mask: Tensor) -> Tensor:
    """Convert PyTorch's ``key_padding_mask`` (batch, seq_k), True = ignore, to our (batch, 1, seq_k)."""
    check_tensor("key_padding_mask", key_padding_mask, "batch seq_k")
    return ~key_padding_mask.bool().unsqueeze(-2)


def to_key_padding_mask(mask: Tensor) -> Tensor:
    """Convert our (batch, 1, seq_k) padding mask back to PyTorch's (batch, seq_k), True = ignore."""
    check_tensor("mask", mask, "batch 1 seq_k", "bool")
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
    batch = _check_qkv(q, k, v)
    check_number("dropout_p", dropout_p, 0.0, 1.0)
    if mask is not None:
        check_mask(mask, q.shape[-2], k.shape[-2], batch)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        # softmax over a row of only -inf is NaN: give such rows finite scores here
        # and zero their weights below.
        no_key = ~mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask, float("-inf")).masked_fill(no_key, 0.0)
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
    return weights @ v, weights
