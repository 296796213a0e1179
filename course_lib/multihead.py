"""Multi-head attention (introduced in notebook 02_multi_head_attention).

Each head attends in its own d_model / num_heads dimensional subspace; the heads'
outputs are concatenated and mixed by the output projection W^O.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import scaled_dot_product_attention
from .validation import check, check_int, check_mask, check_number, check_tensor, check_type


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(batch, seq, d_model) -> (batch, num_heads, seq, d_head): head h takes features h*d_head..(h+1)*d_head."""
    check_tensor("x", x, "batch seq d_model")
    check_int("num_heads", num_heads, low=1)
    batch, seq, d_model = x.shape
    if d_model % num_heads:
        raise ValueError(f"num_heads must divide d_model={d_model}, got {num_heads}")
    return x.view(batch, seq, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(batch, num_heads, seq, d_head) -> (batch, seq, num_heads * d_head), the inverse of split_heads."""
    check_tensor("x", x, "batch num_heads seq d_head")
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
        check_int("d_model", d_model, low=1)
        check_int("num_heads", num_heads, low=1)
        if d_model % num_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by num_heads={num_heads} "
                "so that every head gets d_model // num_heads features"
            )
        check_number("dropout", dropout, 0.0, 1.0)
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
            check_mask(mask, query.shape[1], key.shape[1], (query.shape[0],), self.num_heads)
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
            check_tensor(name, t, "batch seq d_model", "float", d_model=self.d_model)
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


def copy_torch_attention(torch_mha: nn.MultiheadAttention, mha: nn.Module) -> None:
    """Copy ``torch_mha``'s weights into ``mha`` (ours, or any module with Linear ``w_q, w_k, w_v, w_o``).

    PyTorch packs W_q, W_k, W_v into one ``in_proj_weight`` of shape (3 * d_model, d_model);
    ours keeps them apart. Biases are copied where both sides have them.
    """
    check_type("torch_mha", torch_mha, nn.MultiheadAttention)
    _check_projections(mha, torch_mha.embed_dim)
    with torch.no_grad():
        projections = (mha.w_q, mha.w_k, mha.w_v)
        for linear, w in zip(projections, torch_mha.in_proj_weight.chunk(3)):
            linear.weight.copy_(w)
        mha.w_o.weight.copy_(torch_mha.out_proj.weight)
        if torch_mha.in_proj_bias is not None and mha.w_q.bias is not None:
            for linear, b in zip(projections, torch_mha.in_proj_bias.chunk(3)):
                linear.bias.copy_(b)
            mha.w_o.bias.copy_(torch_mha.out_proj.bias)


def to_torch_attention(mha: nn.Module, num_heads: int) -> nn.MultiheadAttention:
    """A ``torch.nn.MultiheadAttention`` (batch_first, eval mode) with ``mha``'s weights.

    ``mha`` needs Linear ``w_q, w_k, w_v, w_o`` of shape (d_model, d_model); the copy has the
    dtype of ``mha.w_q.weight`` and biases where ``mha`` has them.
    """
    _check_projections(mha)
    check_int("num_heads", num_heads, low=1)
    if mha.w_q.weight.shape[1] % num_heads:
        raise ValueError(f"num_heads must divide d_model={mha.w_q.weight.shape[1]}, got {num_heads}")
    weight = mha.w_q.weight
    bias = mha.w_q.bias is not None
    ref = nn.MultiheadAttention(weight.shape[1], num_heads, bias=bias, batch_first=True,
                                dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        if bias:
            ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
            ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref.eval()


def _check_projections(mha: object, d_model: int | None = None) -> None:
    """``mha`` must have Linear ``w_q, w_k, w_v, w_o`` (of width ``d_model`` when given)."""
    expected = "a module with Linear w_q, w_k, w_v, w_o (such as MultiHeadAttention)"
    check(all(isinstance(getattr(mha, n, None), nn.Linear) for n in ("w_q", "w_k", "w_v", "w_o")),
          "mha", expected, mha, TypeError)
    if d_model is not None:
        check(mha.w_q.in_features == d_model, "mha", f"{expected} of d_model={d_model} (torch_mha's embed_dim)",
              mha.w_q.weight)
