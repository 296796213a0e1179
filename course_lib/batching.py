"""Batches: padded pairs with their masks, and windows of a long text (introduced in notebook 06_training).

An encoder-decoder trains on many (source, target) pairs at once; they differ in length, so
each ``Batch`` is padded with ``<pad>`` to its longest sequence, and masks tell attention and
the loss which positions are real. A language model (notebook 08) trains on windows of one
long token sequence instead: an ``LMBatch`` of inputs and the same tokens shifted by one.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor

from .attention import padding_mask
from .data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from .decoder import target_mask
from .validation import check, check_id_sequences, check_int, check_tensor


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Right-pad lists of ids to one (batch, longest) LongTensor."""
    check_id_sequences("sequences", sequences)
    check_int("pad_id", pad_id)
    out = torch.full((len(sequences), max(map(len, sequences))), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


@dataclass
class Batch:
    """One padded batch for an encoder-decoder model, with its masks.

    src:      (batch, src) source ids, each ending in <eos>
    tgt_in:   (batch, tgt) the decoder's input:  <bos> y1 ... yn   (teacher forcing)
    tgt_out:  (batch, tgt) what it must predict: y1 ... yn <eos>  (tgt_in shifted left by one)
    src_mask: (batch, 1, src) True at real source tokens
    tgt_mask: (batch, tgt, tgt) True where query t may attend to key s: s <= t and s is no padding
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    src_mask: Tensor
    tgt_mask: Tensor

    @property
    def num_tokens(self) -> int:
        """How many target tokens are scored (padding excluded)."""
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> Batch:
    """A Batch from lists of source and target ids (without special tokens)."""
    check_id_sequences("sources", sources)
    check_id_sequences("targets", targets, allow_empty=True)
    if len(sources) != len(targets):
        raise ValueError(f"sources and targets must pair up (as many sources as targets), "
                         f"got {len(sources)} sources and {len(targets)} targets")
    src = pad_sequences([list(s) + [EOS_ID] for s in sources])
    tgt_in = pad_sequences([[BOS_ID] + list(t) for t in targets])
    tgt_out = pad_sequences([list(t) + [EOS_ID] for t in targets])
    return Batch(src, tgt_in, tgt_out, padding_mask(src, PAD_ID), target_mask(tgt_in, PAD_ID))


class BatchLoader:
    """Iterates over padded Batches of (source ids, target ids) pairs.

    With ``shuffle``, every pass draws a new order; pairs of similar source length share a
    batch (sorted within pools of 50 batches), so that little compute goes to padding.
    ``max_tokens`` additionally caps the padded size (batch x longest sequence) of a batch.
    """

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int,
                 shuffle: bool = True, seed: int = 0, max_tokens: int | None = None) -> None:
        check(isinstance(pairs, Sequence) and len(pairs) > 0
              and all(isinstance(p, Sequence) and len(p) == 2 for p in pairs),
              "pairs", "a non-empty list of (source ids, target ids) pairs", pairs)
        check_id_sequences("sources of pairs", [p[0] for p in pairs])
        check_id_sequences("targets of pairs", [p[1] for p in pairs])
        check_int("batch_size", batch_size, low=1)
        check_int("max_tokens", max_tokens, low=1, optional=True)
        self.pairs, self.batch_size, self.shuffle, self.max_tokens = list(pairs), batch_size, shuffle, max_tokens
        self.rng = random.Random(seed)
        self._fixed = None if shuffle else self._group(list(range(len(self.pairs))))

    def _group(self, order: list[int]) -> list[list[int]]:
        length = lambda i: max(len(self.pairs[i][0]), len(self.pairs[i][1])) + 2  # noqa: E731
        pool = 50 * self.batch_size
        groups = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=length)
            group: list[int] = []
            for i in chunk:  # ascending length: pair i is the longest of its group so far
                if group and (len(group) == self.batch_size
                              or (self.max_tokens and length(i) * (len(group) + 1) > self.max_tokens)):
                    groups.append(group)
                    group = []
                group.append(i)
            groups.append(group)
        return groups

    def __iter__(self) -> Iterator[Batch]:
        if self._fixed is not None:
            groups = self._fixed
        else:
            order = list(range(len(self.pairs)))
            self.rng.shuffle(order)
            groups = self._group(order)
            self.rng.shuffle(groups)
        for group in groups:
            yield make_batch([self.pairs[i][0] for i in group], [self.pairs[i][1] for i in group])

    def __len__(self) -> int:
        return len(self._fixed if self._fixed is not None else self._group(list(range(len(self.pairs)))))


class LMBatch(NamedTuple):
    """Windows of a token sequence for a language model: ``targets[:, t]`` is the token after ``inputs[:, t]``.

    inputs, targets: (batch, block_size) token ids.
    """

    inputs: Tensor
    targets: Tensor


def _check_sequence(data: Tensor, block_size: int, batch_size: int) -> None:
    check_tensor("data", data, "N", "integer")
    check_int("block_size", block_size, 1, len(data) - 1)
    check_int("batch_size", batch_size, low=1)


def get_batch(data: Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None) -> LMBatch:
    """Random windows of a token sequence and their targets (introduced in notebook 08_gpt).

    data: (N,) token ids. Returns inputs, targets of shape (batch_size, block_size) with
    targets[:, t] = inputs[:, t + 1] wherever both are in the window: the targets are the
    inputs shifted by one.
    """
    _check_sequence(data, block_size, batch_size)
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    windows = data[starts.unsqueeze(1) + torch.arange(block_size + 1)]  # (batch, block_size + 1)
    return LMBatch(windows[:, :-1], windows[:, 1:])


def lm_batches(data: Tensor, block_size: int, batch_size: int, seed: int = 0) -> Iterator[LMBatch]:
    """An endless stream of ``get_batch`` draws, reproducible from ``seed`` (introduced in notebook 08_gpt)."""
    _check_sequence(data, block_size, batch_size)
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield get_batch(data, block_size, batch_size, generator)


def lm_windows(data: Tensor, block_size: int, batch_size: int = 64,
               max_batches: int | None = None) -> list[LMBatch]:
    """Consecutive, non-overlapping windows covering ``data``, for evaluation (introduced in notebook 08_gpt).

    ``max_batches`` keeps that many batches only, their windows spread evenly over ``data``,
    to save time during training.
    """
    _check_sequence(data, block_size, batch_size)
    check_int("max_batches", max_batches, low=1, optional=True)
    n_windows = (len(data) - 1) // block_size
    starts = torch.arange(n_windows) * block_size
    if max_batches is not None and n_windows > max_batches * batch_size:
        starts = starts[torch.linspace(0, n_windows - 1, max_batches * batch_size).long()]
    windows = [data[chunk.unsqueeze(1) + torch.arange(block_size + 1)] for chunk in starts.split(batch_size)]
    return [LMBatch(w[:, :-1], w[:, 1:]) for w in windows]
