"""Checks of notebook 05_decoder: the post-LN decoder layer, the causality test."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention import causal_mask, padding_mask
from ..decoder import DecoderLayer
from .engine import CheckFailed, check_close, exercise, is_close, layer_and_reference


def _decoder_variant(layer: nn.Module, x: Tensor, memory: Tensor, tgt_mask: Tensor | None,
                     memory_mask: Tensor | None, order: str = "scf", self_mask: str | None = "tgt",
                     cross_mask: str | None = "memory", cross_q: str = "x", cross_kv: str = "memory",
                     pre_ln: bool = False, residual: bool = True) -> Tensor:
    """A decoder layer's forward (eval mode) built from ``layer``'s sub-modules, right or with one mistake.

    order: the sub-layers in the order applied (s = self-attention, c = cross-attention,
    f = feed-forward); each keeps its own norm (s: norm1, c: norm2, f: norm3).
    """
    masks = {"tgt": tgt_mask, "memory": memory_mask, None: None}

    def sublayer(kind: str, h: Tensor) -> Tensor:
        if kind == "s":
            return layer.self_attn(h, mask=masks[self_mask])[0]
        if kind == "c":
            inputs = {"x": h, "memory": memory}
            kv = inputs[cross_kv]
            return layer.cross_attn(inputs[cross_q], kv, kv, mask=masks[cross_mask])[0]
        return layer.ff(h)

    norms = {"s": layer.norm1, "c": layer.norm2, "f": layer.norm3}
    for kind in order:
        norm = norms[kind]
        if pre_ln:
            x = x + sublayer(kind, norm(x))
        else:
            x = norm(x + sublayer(kind, x) if residual else sublayer(kind, x))
    return x


@exercise(forbid={"course_lib.decoder.DecoderLayer": DecoderLayer,
                  "torch.nn.TransformerDecoderLayer": nn.TransformerDecoderLayer})
def check_decoder_layer(layer_class: type[nn.Module]) -> None:
    """Notebook 05: the student's post-LN decoder layer equals course_lib's ``DecoderLayer``.

    ``layer_class(d_model, num_heads, d_ff, dropout)`` has the sub-modules of
    ``course_lib.decoder.DecoderLayer`` and ``forward(x, memory, tgt_mask=None, memory_mask=None)``.
    """
    d_model, num_heads, d_ff = 8, 2, 16
    layer, reference, g = layer_and_reference(layer_class, DecoderLayer, (d_model, num_heads, d_ff),
                                               ("norm1", "norm2", "norm3"), seed=6,
                                               modules=("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3"))

    # Same length of target and source first, so that a mix-up of x and memory runs and can be named.
    x, memory = torch.randn(2, 4, d_model, generator=g), torch.randn(2, 4, d_model, generator=g)
    tgt_mask = causal_mask(4)
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, None)
        variant = lambda **kw: _decoder_variant(layer, x, memory, tgt_mask, None, **kw)
        check_close(actual, reference(x, memory, tgt_mask), "the decoder layer's output", {
            "the cross-attention takes its keys and values from the decoder's own states x; "
            "they must come from the encoder output: self.cross_attn(x, memory, memory, ...)":
                variant(cross_kv="x"),
            "the cross-attention's queries come from the decoder (x), its keys and values from memory; "
            "you swapped them": variant(cross_q="memory", cross_kv="x"),
            "the causal mask is missing: pass tgt_mask to the self-attention, or position t sees "
            "the target tokens after it": variant(self_mask=None),
            "the masks are swapped: tgt_mask (causal) belongs to the self-attention, memory_mask to "
            "the cross-attention": variant(self_mask="memory", cross_mask="tgt"),
            "the sub-layers are in the wrong order: masked self-attention first, then cross-attention, "
            "then the feed-forward network": variant(order="csf"),
            "the feed-forward network comes last, after the cross-attention": variant(order="sfc"),
            "LayerNorm is applied before each sub-layer (pre-LN); this layer is post-LN as in the "
            "paper: x = norm(x + dropout(sublayer(x)))": variant(pre_ln=True),
            "a residual connection is missing: each sub-layer's input is added back before the norm, "
            "norm(x + sublayer(x))": variant(residual=False),
        })

    # Then different lengths and padding on both sides.
    x, memory = torch.randn(2, 5, d_model, generator=g), torch.randn(2, 3, d_model, generator=g)
    tgt = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 0, 0]])
    tgt_mask = padding_mask(tgt, 0) & causal_mask(5)
    memory_mask = padding_mask(torch.tensor([[1, 2, 3], [1, 0, 0]]), 0)
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, memory_mask)
        variant = lambda **kw: _decoder_variant(layer, x, memory, tgt_mask, memory_mask, **kw)
        check_close(actual, reference(x, memory, tgt_mask, memory_mask),
                    "the output with padded target and source", {
            "memory_mask is not used: pass it to the cross-attention, so that padded source positions "
            "get no attention": variant(cross_mask=None),
            "tgt_mask is not passed to the self-attention": variant(self_mask=None),
        })

    # In training, dropout with p=1 zeroes every sub-layer's output: only the norms remain.
    layer = layer_class(d_model, num_heads, d_ff, dropout=1.0).train()
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, memory_mask)
        expected = layer.norm3(layer.norm2(layer.norm1(x)))
    if not (isinstance(actual, Tensor) and is_close(actual, expected, 1e-5)):
        raise CheckFailed("in training mode each sub-layer's output must go through its dropout before "
                          "the residual sum: norm1(x + dropout1(self_attn(...))), then dropout2 for the "
                          "cross-attention and dropout3 for the feed-forward network")


def _running_sum(x: Tensor) -> Tensor:
    return x.cumsum(dim=1)


def _next_token_leak(x: Tensor) -> Tensor:
    """Output t = x[t] + x[t+1]: every position but the last reads the next one."""
    return x + torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


def _late_leak(x: Tensor) -> Tensor:
    """Only the last-but-one output reads the last input; position 0 is causal."""
    out = x.clone()
    out[:, -2] = out[:, -2] + x[:, -1]
    return out


def _middle_leak(x: Tensor) -> Tensor:
    """Output 0 also reads x[2]; everything else is the identity."""
    out = x.clone()
    out[:, 0] = out[:, 0] + x[:, 2]
    return out


@exercise()
def check_is_causal(is_causal: Callable[..., bool]) -> None:
    """Notebook 05: ``is_causal(fn, x)`` says whether fn's output at each position t ignores x after t."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 5, 3, generator=g)
    widen = torch.randn(3, 7, generator=g)
    cases = [
        (_running_sum, True, "is_causal said False for a causal function (a running sum: output t = "
         "x[0] + ... + x[t]). Compare only the outputs at positions 0..t, and change only the inputs "
         "after t: output t may depend on x[t] itself"),
        (lambda x: _running_sum(x) @ widen, True, "is_causal said False for a causal function whose "
         "output has another width than its input (batch, seq, 7); compare outputs with outputs"),
        (_next_token_leak, False, "is_causal missed a leak from the next token (output t reads x[t+1]): "
         "compare the outputs at positions 0..t, t included, for every t up to seq - 2"),
        (_middle_leak, False, "is_causal missed a leak from position 2 into position 0: change every "
         "input after t, not only the last one"),
        (_late_leak, False, "is_causal missed a leak into position seq - 2 only (position 0 ignores the "
         "future): test every t from 0 to seq - 2, not only t = 0"),
    ]
    for fn, expected, message in cases:
        before = x.clone()
        result = is_causal(fn, x)
        if not torch.equal(x, before):
            raise CheckFailed("is_causal changed its input x in place; change a copy (x.clone())")
        if isinstance(result, Tensor) and result.numel() == 1:
            result = bool(result)
        if not isinstance(result, bool):
            raise CheckFailed(f"is_causal should return True or False, got {type(result).__name__}"
                              + (" (did you forget to `return` it?)" if result is None else ""))
        if result != expected:
            raise CheckFailed(message)
