"""Turning a trained model into outputs: decoding (introduced in notebook 06_training).

An encoder-decoder model scores one next token at a time. To translate, encode the source
once, start the target with <bos>, and extend it token by token until <eos>:

- ``greedy_decode`` takes the most probable token at every step;
- ``beam_search`` keeps the ``beam_size`` most probable partial translations and returns the
  best finished one, its log-probability divided by length^alpha so that short outputs are
  not favoured merely for having fewer factors below 1.

Both recompute the decoder over the whole prefix at every step: simple and exact.
(Notebook 08 caches keys and values to avoid that.)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import causal_mask, padding_mask
from .data.tokenizers import BOS_ID, EOS_ID, PAD_ID, pad_sequences


def _next_log_probs(model: nn.Module, prefix: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
    """(k, t) prefixes -> (k, V) log-probabilities of the token that follows each."""
    # The prefixes hold no padding, so the causal mask is the whole target mask.
    tgt_mask = causal_mask(prefix.shape[1], device=prefix.device).unsqueeze(0)
    hidden = model.decode(prefix, memory, src_mask, tgt_mask)
    logits = model.generator(hidden[:, -1])
    return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(dim=-1)


@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, max_len: int, src_mask: Tensor | None = None,
                  bos_id: int = BOS_ID, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """The most probable token at each step, for a whole batch at once (introduced in notebook 06_training).

    src: (batch, src) token ids; src_mask: (batch, 1, src), by default the padding mask of src.
    Returns (batch, 1 + n) with n <= max_len: <bos>, the generated tokens, <eos>, then <pad>
    once a row has finished. Put the model in eval mode first (no dropout).
    """
    if src_mask is None:
        src_mask = padding_mask(src, pad_id)
    memory = model.encode(src, src_mask)
    out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        token = _next_log_probs(model, out, memory, src_mask).argmax(dim=-1)
        token = token.masked_fill(done, pad_id)
        out = torch.cat([out, token.unsqueeze(1)], dim=1)
        done |= token == eos_id
        if done.all():
            break
    return out


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, max_len: int, beam_size: int = 4, alpha: float = 0.6,
                src_mask: Tensor | None = None, bos_id: int = BOS_ID, eos_id: int = EOS_ID,
                pad_id: int = PAD_ID) -> Tensor:
    """Length-normalized beam search, one source sentence at a time (introduced in notebook 06_training).

    Keeps the ``beam_size`` best unfinished prefixes by total log-probability; a prefix that
    ends in <eos> is set aside with the score log P / length^alpha (length counts the
    generated tokens, <eos> included). The search stops when ``beam_size`` hypotheses are
    finished or after ``max_len`` tokens, and returns the best-scoring one. With
    ``beam_size=1`` this is greedy decoding. Same arguments and output layout as ``greedy_decode``.
    """
    if src_mask is None:
        src_mask = padding_mask(src, pad_id)
    memory = model.encode(src, src_mask)
    best = [_beam_one(model, memory[i:i + 1], src_mask[i:i + 1], max_len, beam_size, alpha, bos_id, eos_id)
            for i in range(src.shape[0])]
    return pad_sequences(best, pad_id).to(src.device)


def _beam_one(model: nn.Module, memory: Tensor, src_mask: Tensor, max_len: int, beam_size: int,
              alpha: float, bos_id: int, eos_id: int) -> list[int]:
    beams = torch.full((1, 1), bos_id, dtype=torch.long, device=memory.device)  # (k, t)
    scores = torch.zeros(1, device=memory.device)                                 # (k,) total log P
    finished: list[tuple[float, list[int]]] = []
    for _ in range(max_len):
        k = beams.shape[0]
        log_probs = _next_log_probs(model, beams, memory.expand(k, -1, -1), src_mask.expand(k, -1, -1))
        vocab = log_probs.shape[-1]
        # 2 * beam_size candidates: even if beam_size of them end in <eos>, enough unfinished ones remain.
        top = (scores.unsqueeze(1) + log_probs).flatten().topk(min(2 * beam_size, k * vocab))
        kept = []  # (row, token, score) of the unfinished candidates, best first
        for score, index in zip(top.values.tolist(), top.indices.tolist()):
            row, token = divmod(index, vocab)
            if token == eos_id:
                tokens = beams[row].tolist() + [eos_id]
                finished.append((score / (len(tokens) - 1) ** alpha, tokens))
            else:
                kept.append((row, token, score))
            if len(kept) == beam_size:
                break
        if len(finished) >= beam_size or not kept:
            break
        rows, tokens, kept_scores = zip(*kept)
        beams = torch.cat([beams[list(rows)], torch.tensor(tokens, device=beams.device).unsqueeze(1)], dim=1)
        scores = torch.tensor(kept_scores, dtype=log_probs.dtype, device=beams.device)
    else:  # out of steps: the unfinished beams compete too
        finished += [(s / (beams.shape[1] - 1) ** alpha, b) for s, b in zip(scores.tolist(), beams.tolist())]
    return max(finished, key=lambda f: f[0])[1]


# --- notebook 08_gpt: sampling from a language model, and the KV cache --------------------
# A language model gives the logits of the next token; these turn them into a choice. The
# filters are transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper,
# applied in that order: removed tokens get -inf, so the softmax gives them probability 0.

def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature (introduced in notebook 08_gpt): below 1 sharpens the distribution
    towards the most probable token, above 1 flattens it towards uniform. (..., V) -> (..., V)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for 0), got {temperature}")
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, -inf elsewhere (ties with the k-th are kept)
    (introduced in notebook 08_gpt). (..., V) -> (..., V)."""
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (introduced in notebook 08_gpt): keep the most probable tokens until
    their probabilities add up to ``p``, the token that crosses ``p`` included; -inf elsewhere.
    The most probable token always stays. (..., V) -> (..., V)."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # the probability mass of the tokens ranked above each token: once it reaches p, drop it
    mass_before = probs.cumsum(dim=-1) - probs
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One next token per row (introduced in notebook 08_gpt). logits: (batch, V) -> (batch,) ids.

    ``temperature=0`` is greedy decoding (the argmax). Otherwise temperature, then top-k, then
    top-p filtering, and a draw from the softmax with ``torch.multinomial`` (as transformers'
    ``generate(do_sample=True)`` does).
    """
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
    (batch, T + max_new_tokens) (introduced in notebook 08_gpt).

    With ``use_cache`` each step feeds only the newest token and the keys and values of the
    earlier ones (``model(token, past)``); without it, each step recomputes the whole prefix.
    The model sees at most its ``block_size`` last tokens: past that, the window slides and
    the cache is rebuilt from the window. Put the model in eval mode first (no dropout).
    """
    block = model.config.block_size
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
