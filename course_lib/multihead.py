"""Multi-head attention (introduced in notebook 02_multi_head_attention).

Each head attends in its own d_model / num_heads dimensional subspace; the heads'
outputs are concatenated and mixed by the output projection W^O.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import check_mask, scaled_dot_product_attention


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(batch, seq, d_model) -> (batch, num_heads, seq, d_head): head h takes features h*d_head..(h+1)*d_head."""
    batch, seq, d_model = x.shape
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    return x.view(batch, seq, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(batch, num_heads, seq, d_head) -> (batch, seq, num_heads * d_head), the inverse of split_heads."""
    batch, num_heads, seq, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, seq, num_heads * d_head)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    ``fast=True`` computes the same function through
    ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels, no weights returned).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 fast: bool = False) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by num_heads={num_heads} "
                "so that every head gets d_model // num_heads features"
            )
        self.d_model, self.num_heads, self.dropout, self.fast = d_model, num_heads, dropout, fast
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Self-attention when only ``query`` is given, cross-attention otherwise.

        query: (batch, seq_q, d_model); key, value: (batch, seq_k, d_model) (default: query);
        mask: bool, True = may attend, broadcastable to (batch, seq_q, seq_k),
        or (batch, num_heads, seq_q, seq_k) for a per-head mask.
        Returns the output (batch, seq_q, d_model) and the weights
        (batch, num_heads, seq_q, seq_k), or None for the weights when ``fast``.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        q = split_heads(self.w_q(query), self.num_heads)
        k = split_heads(self.w_k(key), self.num_heads)
        v = split_heads(self.w_v(value), self.num_heads)
        if mask is not None:
            check_mask(mask, query.shape[1], key.shape[1])
            if mask.dim() == 3:  # (batch, seq_q, seq_k): the same mask for every head
                mask = mask.unsqueeze(1)
        dropout_p = self.dropout if self.training else 0.0
        if self.fast:
            out, weights = _fused_attention(q, k, v, mask, dropout_p), None
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        return self.w_o(merge_heads(out)), weights

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must have shape (batch, seq, d_model={self.d_model}), "
                    f"got {tuple(t.shape)}"
                )
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ValueError(
                f"query, key and value must share the batch size, got "
                f"{query.shape[0]}, {key.shape[0]}, {value.shape[0]}"
            )
        if key.shape[1] != value.shape[1]:
            raise ValueError(
                f"key and value must have the same length, got {key.shape[1]} and {value.shape[1]}"
            )


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float) -> Tensor:
    """F.scaled_dot_product_attention with zeros, not NaN, for queries that may attend to nothing."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    no_key = ~mask.any(dim=-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | no_key, dropout_p=dropout_p)
    return out.masked_fill(no_key, 0.0)
