"""Decoding: turning a trained encoder-decoder into outputs (introduced in notebook 06_training).

An encoder-decoder model scores one next token at a time. To translate, encode the source
once, start the target with <bos>, and extend it token by token until <eos>:

- ``greedy_decode`` takes the most probable token at every step;
- ``beam_search`` keeps the ``beam_size`` most probable partial translations and returns the
  best finished one, its log-probability divided by length^alpha so that short outputs are
  not favoured merely for having fewer factors below 1.

Both recompute the decoder over the whole prefix at every step: simple and exact.
(``course_lib.sampling.generate`` caches keys and values to avoid that.) ``translate`` runs
either on texts, through a tokenizer, in batches.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import causal_mask, padding_mask
from .batching import make_batch, pad_sequences
from .data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from .validation import check, check_int, check_mask, check_number, check_tensor


def _check_decoding(model: object, src: Tensor, max_len: int, src_mask: Tensor | None,
                    ids: dict[str, int]) -> None:
    check(all(hasattr(model, n) for n in ("encode", "decode", "generator")), "model",
          "an encoder-decoder with encode, decode and generator (a course_lib.decoder.Transformer)",
          model, TypeError)
    check_tensor("src", src, "batch src", "index")
    check_int("max_len", max_len, low=1)
    if src_mask is not None:
        check_mask(src_mask, 1, src.shape[1], (src.shape[0],), name="src_mask")
    for name, value in ids.items():  # any int: eos_id=-1, say, never ends a row
        check_int(name, value)


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
    """The most probable token at each step, for a whole batch at once.

    src: (batch, src) token ids; src_mask: (batch, 1, src), by default the padding mask of src.
    Returns (batch, 1 + n) with n <= max_len: <bos>, the generated tokens, <eos>, then <pad>
    once a row has finished. Put the model in eval mode first (no dropout).
    """
    _check_decoding(model, src, max_len, src_mask, {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id})
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
    """Length-normalized beam search, one source sentence at a time.

    Keeps the ``beam_size`` best unfinished prefixes by total log-probability; a prefix that
    ends in <eos> is set aside with the score log P / length^alpha (length counts the
    generated tokens, <eos> included). The search stops when ``beam_size`` hypotheses are
    finished or after ``max_len`` tokens, and returns the best-scoring one. With
    ``beam_size=1`` this is greedy decoding. Same arguments and output layout as ``greedy_decode``.
    """
    _check_decoding(model, src, max_len, src_mask, {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id})
    check_int("beam_size", beam_size, low=1)
    check_number("alpha", alpha, low=0.0)
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


@torch.no_grad()
def translate(model: nn.Module, tokenizer, sentences: list[str], beam_size: int = 1,
              batch_size: int = 100) -> list[str]:
    """Each sentence through ``tokenizer.encode``, the model and ``tokenizer.decode``: greedy with
    ``beam_size=1``, else beam search, ``batch_size`` sentences at a time, each allowed
    1.5 times its batch's source length plus 10 tokens. Puts the model in eval mode."""
    check(isinstance(sentences, list) and all(isinstance(s, str) for s in sentences), "sentences",
          "a list of str", sentences, TypeError)
    check_int("beam_size", beam_size, low=1)
    check_int("batch_size", batch_size, low=1)
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(sentences), batch_size):
        chunk = [tokenizer.encode(s) for s in sentences[start:start + batch_size]]
        src = make_batch(chunk, [[]] * len(chunk)).src.to(device)
        max_len = int(1.5 * src.shape[1]) + 10
        ids = greedy_decode(model, src, max_len) if beam_size == 1 else beam_search(model, src, max_len, beam_size)
        out += [tokenizer.decode(row) for row in ids.tolist()]
    return out
