"""Checks of notebook 10_family: the prefix LM's mask, T5's mixed text-to-text training set."""
from __future__ import annotations

import copy
from collections import Counter
from typing import Callable

import torch
from torch import Tensor

from .. import family
from .engine import CheckFailed, check_close, exercise, on_error


@exercise(forbid={"course_lib.family.prefix_lm_mask": family.prefix_lm_mask})
def check_prefix_lm_mask(prefix_lm_mask: Callable[..., Tensor]) -> None:
    """Notebook 10: ``prefix_lm_mask(prefix_lengths, seq_len)`` returns (batch, seq_len, seq_len) bool,
    True where query i may attend key j: j <= i, or j < prefix_lengths[b]."""
    prefix_lengths, seq = torch.tensor([2, 0, 4, 3]), 5   # a different prefix per row, 0 among them
    what = f"prefix_lm_mask(torch.tensor({prefix_lengths.tolist()}), {seq})"
    with on_error("prefix_lengths is (batch,): compare it, reshaped to (batch, 1, 1), with the key positions "
                  "torch.arange(seq_len) so that it broadcasts to (batch, seq_len, seq_len)",
                  (RuntimeError, IndexError, TypeError)):
        actual = prefix_lm_mask(prefix_lengths.clone(), seq)
    if isinstance(actual, Tensor) and actual.dtype != torch.bool:
        raise CheckFailed(f"{what} should be a torch.bool tensor (True = may attend), got {actual.dtype}: "
                          "comparisons such as j <= i give bools; combine them with |")
    expected = family.prefix_lm_mask(prefix_lengths, seq)
    pos = torch.arange(seq)
    i, j = pos[None, :, None], pos[None, None, :]
    p = prefix_lengths[:, None, None]
    causal = (j <= i).expand(len(prefix_lengths), seq, seq)
    check_close(actual, expected, what, {
        "the mask has the wrong polarity: True means 'may attend'": ~expected,
        "the prefix is missing: this is the causal mask; keys j < prefix_lengths[b] are visible to every "
        "query": causal,
        "the mask is all True: after the prefix the model writes left to right, so a query must not see the "
        "keys after it (j > i) unless they are in the prefix": torch.ones_like(expected),
        "the prefix is a set of keys (columns j < prefix_length) that every query sees; you gave the prefix's "
        "queries (rows) every key": (j <= i) | (i < p),
        "prefix off by one: the prefix is the keys 0..prefix_length - 1 (j < prefix_length, not <=)":
            (j <= i) | (j <= p),
        "prefix off by one: the prefix holds prefix_length keys, j < prefix_length": (j <= i) | (j < p - 1),
        "each row has its own prefix length: use prefix_lengths[b] for row b, not one length for all":
            ((j <= i) | (j < prefix_lengths[0])).expand_as(expected),
        "each row has its own prefix length: use prefix_lengths[b] for row b, not the longest for all":
            ((j <= i) | (j < prefix_lengths.max())).expand_as(expected),
        "the causal part is off by one: every query may attend to itself (j <= i, not j < i)":
            (j < i) | (j < p),
    })


def _as_pairs(what: str, result: object) -> list[tuple[str, str]]:
    if not isinstance(result, list):
        raise CheckFailed(f"{what} should return a list of (source, target) pairs, got {type(result).__name__}"
                          + (" (did you forget to `return` it?)" if result is None else ""))
    for item in result:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(s, str) for s in item)):
            raise CheckFailed(f"{what} should return (source, target) tuples of two strings, got {item!r}")
    return result


@exercise(forbid={"course_lib.family.mix_tasks": family.mix_tasks})
def check_mix_tasks(mix_tasks: Callable[..., list]) -> None:
    """Notebook 10: ``mix_tasks(tasks, seed)`` returns every task's pairs with the source written
    "name: source", concatenated in the dict's order and shuffled by random.Random(seed).shuffle."""
    tasks = {"iso": [(f"{d} March 2021", f"2021-03-{d:02d}") for d in range(1, 13)],
             "year": [("3/3/21", "2021"), ("MAR 03 2021", "2021"), ("the 3rd of march, 2021", "2021"),
                      ("Wed, 3 Mar 21", "2021")]}   # tasks of different sizes
    given = copy.deepcopy(tasks)
    what = "mix_tasks(tasks, seed=3)"
    with on_error("tasks is a dict: name -> list of (source, target) tuples; loop over tasks.items()",
                  (TypeError, ValueError, AttributeError, KeyError)):
        result = _as_pairs(what, mix_tasks(tasks, seed=3))
    if tasks != given:
        raise CheckFailed(f"{what} changed the caller's lists: copy the pairs into a new list before shuffling")
    expected = family.mix_tasks(given, seed=3)
    if result == expected:
        return
    sources = {s for s, _ in result}
    if Counter(result) != Counter(expected):
        if len(result) < len(expected):
            shortest = min(map(len, given.values()))
            raise CheckFailed(f"{what} returned {len(result)} pairs, expected {len(expected)} (every pair of every "
                              "task)" + (": zip stops at the shortest task" if len(result) == shortest * len(given)
                                         else ""))
        if len(result) > len(expected):
            raise CheckFailed(f"{what} returned {len(result)} pairs, expected {len(expected)}: each pair once")
        raw = {s for pairs in given.values() for s, _ in pairs}
        if sources <= raw:
            raise CheckFailed(f"{what}: the sources carry no task prefix; write each as name + ': ' + source "
                              f"(e.g. {expected[0][0]!r}), which is how one model can tell the tasks apart")
        if any(t.startswith(name) for _, t in result for name in given):
            raise CheckFailed(f"{what}: the prefix goes on the source only; the target stays as it is")
        raise CheckFailed(f"{what}: a source should read name + ': ' + source, exactly, e.g. {expected[0][0]!r}; "
                          f"got {result[0][0]!r}")
    in_order = [(name + family.SEPARATOR + s, t) for name, pairs in given.items() for s, t in pairs]
    if result == in_order:
        raise CheckFailed(f"{what} returns the tasks in blocks, one after the other: shuffle them together, or "
                          "training learns one task and then forgets it while learning the next")
    with on_error("tasks is a dict: name -> list of (source, target) tuples", (TypeError, ValueError)):
        again = mix_tasks(copy.deepcopy(given), seed=3)
    if again != result:
        raise CheckFailed(f"{what} gave a different order when called again with the same seed: shuffle with "
                          "random.Random(seed).shuffle(...), not the global random module")
    raise CheckFailed(f"{what} has the right pairs in another order: concatenate the tasks in the dict's order, "
                      "then shuffle once with random.Random(seed).shuffle")
