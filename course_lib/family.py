"""The Transformer family: what a prefix language model's attention may see, and T5's
text-to-text tasks (introduced in notebook 10_family).

The three members differ in their attention masks: an encoder (BERT) lets every position see
every other, a decoder (GPT) lets position i see positions 0..i, and an encoder-decoder (the
original Transformer, T5, BART) has both, plus cross-attention from every target position to
every source position. A **prefix LM** (Raffel et al., 2020, section 3.2; UniLM, Dong et al.,
2019) is one stack between the two: the prefix (the input) is read bidirectionally, the rest is
written causally.

T5 casts every task as text to text: the task is named by a prefix of the input ("translate
English to German: ..."), so one model, one loss and one decoder serve every task.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .validation import check, check_int, check_tensor, check_type

SEPARATOR = ": "  # between a task's name and its input, as in T5's "summarize: ..."


def prefix_lm_mask(prefix_lengths: Tensor, seq_len: int) -> Tensor:
    """The attention mask of a prefix LM: (batch,) prefix lengths -> (batch, seq_len, seq_len)
    bool, True = may attend. Query i sees key j when j <= i (causal) or j is in the prefix
    (j < prefix_lengths[b]), so the prefix is read in both directions and the rest left to right.
    A prefix of 0 gives the causal mask, one of seq_len the full mask."""
    check_tensor("prefix_lengths", prefix_lengths, "batch", "integer")
    check_int("seq_len", seq_len, low=0)
    check(bool((prefix_lengths >= 0).all() and (prefix_lengths <= seq_len).all()), "prefix_lengths",
          f"lengths between 0 and seq_len={seq_len}", prefix_lengths.tolist())
    pos = torch.arange(seq_len, device=prefix_lengths.device)
    causal = pos[None, :, None] >= pos[None, None, :]            # (1, query, key): j <= i
    in_prefix = pos[None, None, :] < prefix_lengths[:, None, None]  # (batch, 1, key): j < prefix
    return causal | in_prefix


def mix_tasks(tasks: Mapping[str, Sequence[tuple[str, str]]], seed: int = 0) -> list[tuple[str, str]]:
    """One training set for one text-to-text model: every (source, target) pair of every task, its
    source prefixed with the task's name (``"iso: 3 March 2021"``), all shuffled together.

    tasks maps a task name to its (source, target) pairs. The pairs are taken in the mapping's
    order, then shuffled by ``random.Random(seed).shuffle``: tasks left in blocks would be learned
    one after the other, each undoing the last. The caller's lists are not changed.
    """
    check_type("tasks", tasks, Mapping, "a dict of task name -> list of (source, target) pairs")
    check_int("seed", seed)
    mixed = []
    for name, pairs in tasks.items():
        check(isinstance(name, str) and bool(name) and SEPARATOR not in name, "tasks",
              f"task names that are non-empty strings without {SEPARATOR!r}", name)
        for pair in pairs:
            check(isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair),
                  f"tasks[{name!r}]", "(source, target) pairs of strings", pair, TypeError)
            mixed.append((name + SEPARATOR + pair[0], pair[1]))
    random.Random(seed).shuffle(mixed)
    return mixed
