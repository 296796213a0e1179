"""Checks of notebook 02_multi_head_attention: split and merge the heads, the multi-head module."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention import scaled_dot_product_attention
from ..multihead import MultiHeadAttention, merge_heads, split_heads, to_torch_attention
from .engine import CheckFailed, check_close, exercise, on_error, random_mask, require_attributes


@exercise(forbid={"course_lib.multihead.split_heads": split_heads})
def check_split_heads(split: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 02: ``split_heads(x, num_heads)``: (batch, seq, d_model) -> (batch, heads, seq, d_head)."""
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(2))
    check_close(split(x.clone(), 4), split_heads(x, 4), "split_heads(x, num_heads=4)", {
        "heads taken in the wrong order: reshape to (batch, seq, heads, d_head) first, then "
        "transpose(1, 2); reshaping straight to (batch, heads, seq, d_head) mixes tokens":
            x.reshape(2, 4, 3, 2),
        "forgot the transpose: the result must be (batch, heads, seq, d_head)": x.view(2, 3, 4, 2),
        "each head must take a contiguous block of d_head features: reshape to "
        "(batch, seq, heads, d_head), not (batch, seq, d_head, heads)": x.view(2, 3, 2, 4).permute(0, 3, 1, 2),
    })


@exercise(forbid={"course_lib.multihead.merge_heads": merge_heads})
def check_merge_heads(merge: Callable[[Tensor], Tensor]) -> None:
    """Notebook 02: ``merge_heads(x)``: (batch, heads, seq, d_head) -> (batch, seq, heads * d_head)."""
    x = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(3))
    with on_error("after transpose(1, 2) the tensor is not contiguous in memory, so .view cannot merge its "
                  "last two axes: use .reshape (or .contiguous().view)", says="view size is not compatible"):
        merged = merge(x.clone())
    check_close(merged, merge_heads(x), "merge_heads(x)", {
        "heads merged in the wrong order: transpose(1, 2) back to (batch, seq, heads, d_head) "
        "before reshaping to (batch, seq, d_model)": x.reshape(2, 3, 8),
        "the heads are interleaved: head h must come back as the contiguous features "
        "h * d_head .. (h + 1) * d_head - 1; transpose(1, 2), then reshape": x.permute(0, 2, 3, 1).reshape(2, 3, 8),
        "after the transpose, reshape (batch, seq, heads, d_head) to (batch, seq, heads * d_head)":
            x.transpose(1, 2),
    })


@exercise(forbid={"course_lib.multihead.MultiHeadAttention": MultiHeadAttention,
                  "torch.nn.MultiheadAttention": nn.MultiheadAttention,
                  "torch.nn.functional.multi_head_attention_forward": nn.functional.multi_head_attention_forward})
def check_multihead(mha_class: type[nn.Module]) -> None:
    """Notebook 02: the student's module equals ``torch.nn.MultiheadAttention`` with the same weights.

    ``mha_class(d_model, num_heads)`` must have Linear layers ``w_q, w_k, w_v, w_o`` and
    ``forward(query, key, value, mask=None) -> (output, weights)``.
    """
    # batch == num_heads on purpose: a mask that is not unsqueezed over the heads then
    # broadcasts silently (batch b's mask lands on head b) and the check can name it.
    d_model, num_heads = 8, 2
    torch.manual_seed(4)
    mha = mha_class(d_model, num_heads).eval()
    require_attributes(mha, ("w_q", "w_k", "w_v", "w_o"),
                       "the projections w_q, w_k, w_v, w_o (nn.Linear(d_model, d_model))")
    ref = to_torch_attention(mha, num_heads)
    g = torch.Generator().manual_seed(5)
    x, mem = torch.randn(2, 3, d_model, generator=g), torch.randn(2, 5, d_model, generator=g)
    mask = random_mask(2, 3, 5)
    with torch.no_grad():
        for name, (q, kv, m) in {"self-attention": (x, x, None),
                                 "cross-attention with a mask": (x, mem, mask)}.items():
            result = mha(q, kv, kv, mask=m)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise CheckFailed("forward should return a tuple (output, weights)")
            expected, expected_w = ref(q, kv, kv, need_weights=True, average_attn_weights=False,
                                       attn_mask=None if m is None else ~m.repeat_interleave(num_heads, 0))

            def per_head(w_k: nn.Module, w_v: nn.Module, head_mask: Tensor | None) -> tuple[Tensor, Tensor]:
                return scaled_dot_product_attention(
                    split_heads(mha.w_q(q), num_heads), split_heads(w_k(kv), num_heads),
                    split_heads(w_v(kv), num_heads), head_mask)

            heads = per_head(mha.w_k, mha.w_v, None if m is None else m.unsqueeze(1))[0]
            wrong_w = {
                "the weights are averaged over the heads; return them per head, "
                "(batch, heads, seq_q, seq_k)": expected_w.mean(1),
                "keys and values use each other's projection: keys go through self.w_k, "
                "values through self.w_v": per_head(mha.w_v, mha.w_k, None if m is None else m.unsqueeze(1))[1],
            }
            if m is not None:
                wrong_w["the mask is not broadcast over the heads: make the (batch, seq_q, seq_k) mask "
                        "(batch, 1, seq_q, seq_k) with mask.unsqueeze(1)"] = per_head(mha.w_k, mha.w_v, m)[1]
            check_close(result[1], expected_w, f"the weights ({name})", wrong_w)
            check_close(result[0], expected, f"the output ({name})", {
                "the output projection W^O (self.w_o) is missing": merge_heads(heads),
                "heads merged in the wrong order before W^O": mha.w_o(heads.reshape(2, q.shape[1], d_model)),
            })
