"""Sampling from a language model, with or without the KV cache (introduced in notebook 08_gpt).

A language model gives the logits of the next token; these turn them into a choice. The
filters are transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper,
applied in that order: removed tokens get -inf, so the softmax gives them probability 0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .validation import check, check_int, check_number, check_tensor, check_type


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature: below 1 sharpens the distribution
    towards the most probable token, above 1 flattens it towards uniform. (..., V) -> (..., V)."""
    check_tensor("logits", logits, "... V", "float")
    check_number("temperature", temperature, 0.0, low_open=True)
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, -inf elsewhere (ties with the k-th are kept)
   . (..., V) -> (..., V)."""
    check_tensor("logits", logits, "... V", "float")
    check_int("k", k, low=1)
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the most probable tokens until
    their probabilities add up to ``p``, the token that crosses ``p`` included; -inf elsewhere.
    The most probable token always stays. (..., V) -> (..., V)."""
    check_tensor("logits", logits, "... V", "float")
    check_number("p", p, 0.0, 1.0, low_open=True)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # the probability mass of the tokens ranked above each token: once it reaches p, drop it
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One next token per row. logits: (batch, V) -> (batch,) ids.

    ``temperature=0`` is greedy decoding (the argmax). Otherwise temperature, then top-k, then
    top-p filtering, and a draw from the softmax with ``torch.multinomial`` (as transformers'
    ``generate(do_sample=True)`` does).
    """
    check_tensor("logits", logits, "batch V", "float")
    check_number("temperature", temperature, low=0.0)
    check_int("top_k", top_k, low=1, optional=True)
    check_number("top_p", top_p, 0.0, 1.0, low_open=True, optional=True)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate(model: nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None) -> Tensor:
    """Extend ``idx`` (batch, T) by ``max_new_tokens`` tokens from a GPT (course_lib.gpt); returns
    (batch, T + max_new_tokens).

    With ``use_cache`` each step feeds only the newest token and the keys and values of the
    earlier ones (``model(token, past)``); without it, each step recomputes the whole prefix.
    The model sees at most its ``max_len`` last tokens: past that, the window slides and
    the cache is rebuilt from the window. Put the model in eval mode first (no dropout).
    """
    check(isinstance(getattr(getattr(model, "config", None), "max_len", None), int), "model",
          "a GPT (course_lib.gpt.GPT, with config.max_len)", model, TypeError)
    check_tensor("idx", idx, "batch T", "index")
    check_int("max_new_tokens", max_new_tokens, low=0)
    if generator is not None:
        check_type("generator", generator, torch.Generator)
    block = model.config.max_len
    out, past = idx, None
    for _ in range(max_new_tokens):
        if past is None:
            logits, past = model(out[:, -block:])
        else:
            logits, past = model(out[:, -1:], past)
        token = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
        out = torch.cat([out, token.unsqueeze(1)], dim=1)
        if not use_cache or past[0][0].shape[2] == block:
            past = None
    return out
