"""Every attention map of a course_lib model for one input, read with forward hooks
(introduced in notebook 06_training).

``attention_maps(model, *inputs)`` runs ``model(*inputs)`` once and returns the weights of each
``MultiHeadAttention`` inside it (the encoder's and decoder's self-attention, the decoder's
cross-attention, GPT's causal self-attention), keyed by the module's name in the model, such as
``"decoder.layers.1.cross_attn"``. Works for ``Transformer``, ``Encoder``, ``Decoder``, ``Bert``,
``GPT`` and any module that holds MultiHeadAttention layers.
"""
from __future__ import annotations

import math
from contextlib import ExitStack

import torch
from torch import Tensor, nn

from .gpt import CausalSelfAttention
from .multihead import MultiHeadAttention, split_heads
from .validation import check_tensor, check_type


def attention_maps(model: nn.Module, *args, **kwargs) -> dict[str, Tensor]:
    """Run ``model(*args, **kwargs)`` once, in evaluation mode and without gradients, and return
    ``{module name: weights}`` for every MultiHeadAttention in ``model``, in the order they ran.

    weights: (batch, num_heads, seq_q, seq_k), float32 on the CPU; row i is where query i looks,
    each row sums to 1 (0 for a query that may attend to nothing). Modules built with
    ``fast=True`` return no weights themselves; they run the explicit path for this call (same
    outputs). GPT's attention with a KV cache gives (batch, heads, new positions, all positions).
    The model's training mode and ``fast`` flags are restored afterwards.
    """
    check_type("model", model, nn.Module, "an nn.Module (a course_lib model)")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    if not layers:
        raise ValueError(f"{type(model).__name__} holds no MultiHeadAttention layer: no attention to read")
    maps: dict[str, Tensor] = {}

    def hook(name: str):
        def read(module: nn.Module, inputs: tuple, output: tuple) -> None:
            if name in maps:
                raise RuntimeError(f"{name} ran twice in one call: attention_maps reads one forward pass "
                                   "(for decoding, call it on the finished output with teacher forcing)")
            maps[name] = (_causal_weights(module, inputs[0], output[1]) if isinstance(module, CausalSelfAttention)
                          else output[1]).detach().float().cpu()
        return read

    was_training, fast = model.training, {name: m.fast for name, m in layers.items()}
    with ExitStack() as stack, torch.no_grad():
        for name, module in layers.items():
            module.fast = False  # the explicit path returns the weights
            stack.callback(lambda h=module.register_forward_hook(hook(name)): h.remove())
        model.eval()
        try:
            model(*args, **kwargs)
        finally:
            model.train(was_training)
            for name, module in layers.items():
                module.fast = fast[name]
    return maps


def _causal_weights(module: CausalSelfAttention, x: Tensor, present: tuple[Tensor, Tensor]) -> Tensor:
    """The weights of GPT's attention, which returns the keys instead: the new queries (positions
    s - t .. s - 1) against every key so far, each seeing keys up to its own position."""
    q, k = split_heads(module.w_q(x), module.num_heads), present[0]
    t, s = q.shape[2], k.shape[2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    allowed = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(diagonal=s - t)
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


def layer_head_grid(maps: dict[str, Tensor], stack: str, kind: str, example: int = 0) -> Tensor:
    """The maps of one kind in one part of the model, stacked for one example of the batch:
    (layers, heads, seq_q, seq_k), in the order the layers ran. ``stack`` is the start of the
    names ("encoder", "decoder", "blocks"; "" for all), ``kind`` their end ("self_attn",
    "cross_attn", "attn")."""
    check_type("maps", maps, dict, "the dict that attention_maps returns")
    check_type("stack", stack, str)
    check_type("kind", kind, str)
    chosen = [w[example] for name, w in maps.items()
              if name.startswith(stack) and name.rsplit(".", 1)[-1] == kind]
    if not chosen:
        raise ValueError(f"stack and kind must name maps in maps (a name starting with {stack!r} and "
                         f"ending in {kind!r}); the names are {list(maps)}")
    return torch.stack(chosen)


def head_patterns(maps: dict[str, Tensor], stack: str, kind: str, token_ids: Tensor, attention_mask: Tensor,
                  targets: dict[str, int]) -> dict[str, Tensor]:
    """What each head attends to, measured as Clark et al. (2019) do for BERT, over a batch
    (introduced in notebook 07_bert).

    maps: what ``attention_maps`` returned for ``token_ids`` (batch, seq) with ``attention_mask``
    (batch, seq), 1 or True at real tokens, padding on the right; ``stack`` and ``kind`` choose
    the layers as in ``layer_head_grid``; ``targets`` names token ids whose share of attention to
    measure, e.g. ``{"[CLS]": 101, "[SEP]": 102}``. Returns {measure: (layers, heads)}, each the
    mean over the batch's real query tokens of: the weight on the previous token ("previous"),
    on the next token ("next"), on the token itself ("itself"), on the tokens of each target
    (its name), and the entropy of the query's weights in nats ("entropy": 0 when a head
    looks at one token, ln n when it spreads over n). Queries with no previous (no next) token
    do not count for "previous" ("next").
    """
    check_type("maps", maps, dict, "the dict that attention_maps returns")
    check_tensor("token_ids", token_ids, "batch seq", "integer")
    check_tensor("attention_mask", attention_mask, "batch seq", batch=token_ids.shape[0], seq=token_ids.shape[1])
    check_type("targets", targets, dict, "a dict {name: token id}")
    chosen = [w for name, w in maps.items() if name.startswith(stack) and name.rsplit(".", 1)[-1] == kind]
    if not chosen:
        raise ValueError(f"stack and kind must name maps in maps (a name starting with {stack!r} and "
                         f"ending in {kind!r}); the names are {list(maps)}")
    w = torch.stack(chosen).transpose(1, 2).double()  # (layers, heads, batch, seq_q, seq_k)
    if w.shape[2:] != (*token_ids.shape, token_ids.shape[1]):
        raise ValueError(f"maps must be the attention of token_ids, (batch, heads, seq, seq) with (batch, seq) = "
                         f"{tuple(token_ids.shape)}, got {tuple(chosen[0].shape)}")
    real = attention_mask.bool().cpu()
    ids = token_ids.cpu()

    def mean(values: Tensor, valid: Tensor) -> Tensor:  # values (layers, heads, batch, n) over valid (batch, n)
        return (values * valid).sum((-2, -1)) / valid.sum().clamp(min=1)

    both = real[:, 1:] & real[:, :-1]  # query and its neighbour are real tokens
    out = {"previous": mean(w.diagonal(-1, -2, -1), both), "next": mean(w.diagonal(1, -2, -1), both),
           "itself": mean(w.diagonal(0, -2, -1), real)}
    for name, token in targets.items():
        out[name] = mean((w * (ids == token)[:, None, :]).sum(-1), real)
    out["entropy"] = mean(-(w * w.clamp(min=1e-30).log()).sum(-1), real)
    return {name: value.float() for name, value in out.items()}
