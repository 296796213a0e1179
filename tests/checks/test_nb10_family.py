"""course_lib.checks.nb10_family: each check accepts a correct answer and names each mistake it claims to detect."""
import random

import pytest
import torch
from student_copies import student_copy

from course_lib import checks, family

prefix_lm_mask, mix_tasks = student_copy(family.prefix_lm_mask), student_copy(family.mix_tasks)


def mask(prefix_lengths, seq_len, mistake=None):
    """The prefix LM's mask as a student writes it, with one mistake (or none)."""
    pos = torch.arange(seq_len)
    i, j = pos[:, None], pos[None, :]
    p = prefix_lengths[:, None, None]
    if mistake == "longest prefix":
        return torch.stack([(j <= i) | (j < prefix_lengths.max()) for _ in prefix_lengths])
    causal = j < i if mistake == "strict causal" else j <= i
    if mistake == "rows":
        return causal | (i < p)
    if mistake == "<=":
        return causal | (j <= p)
    if mistake == "no prefix":
        return causal.expand(len(prefix_lengths), seq_len, seq_len)
    if mistake == "float":
        return (causal | (j < p)).float()
    if mistake == "polarity":
        return ~(causal | (j < p))
    return causal | (j < p)


def test_prefix_lm_mask_check_accepts_course_lib_and_a_student():
    checks.check_prefix_lm_mask(prefix_lm_mask)
    checks.check_prefix_lm_mask(mask)


@pytest.mark.parametrize("mistake, fragment", [
    ("longest prefix", "its own prefix length"), ("strict causal", "attend to itself"),
    ("rows", "you gave the prefix's queries (rows) every key"), ("<=", "not <="), ("no prefix", "the causal mask"),
    ("float", "torch.bool"), ("polarity", "wrong polarity"),
])
def test_prefix_lm_mask_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_prefix_lm_mask, lambda p, n: mask(p, n, mistake), fragment)


def test_prefix_lm_mask_check_explains_a_batch_that_does_not_broadcast(fails_with):
    def unbatched(prefix_lengths, seq_len):
        pos = torch.arange(seq_len)
        return (pos[None, :] <= pos[:, None]) | (pos[None, :] < prefix_lengths)   # (seq,) against (batch,)
    fails_with(checks.check_prefix_lm_mask, unbatched, "(batch, 1, 1)")


def mix(tasks, seed=0, mistake=None):
    """mix_tasks as a student writes it, with one mistake (or none)."""
    if mistake == "zip":
        pairs = [pair for group in zip(*[[(f"{n}: {s}", t) for s, t in ps] for n, ps in tasks.items()])
                 for pair in group]
    elif mistake == "no prefix":
        pairs = [pair for ps in tasks.values() for pair in ps]
    elif mistake == "no space":
        pairs = [(f"{n}:{s}", t) for n, ps in tasks.items() for s, t in ps]
    elif mistake == "target too":
        pairs = [(f"{n}: {s}", f"{n}: {t}") for n, ps in tasks.items() for s, t in ps]
    elif mistake == "sorted":
        pairs = [(f"{n}: {s}", t) for n, ps in sorted(tasks.items(), reverse=True) for s, t in ps]
    else:
        pairs = [(f"{n}: {s}", t) for n, ps in tasks.items() for s, t in ps]
    if mistake == "in place":
        first = next(iter(tasks.values()))
        random.Random(seed).shuffle(first)
    if mistake == "global random":
        random.shuffle(pairs)
    elif mistake == "blocks":
        pass
    elif mistake == "lists":
        return [list(p) for p in pairs]
    else:
        random.Random(seed).shuffle(pairs)
    return pairs


def test_mix_tasks_check_accepts_course_lib_and_a_student():
    checks.check_mix_tasks(mix_tasks)
    checks.check_mix_tasks(mix)


@pytest.mark.parametrize("mistake, fragment", [
    ("zip", "zip stops at the shortest task"), ("no prefix", "carry no task prefix"), ("no space", "exactly"),
    ("target too", "on the source only"), ("sorted", "in the dict's order"), ("in place", "changed the caller's"),
    ("global random", "random.Random(seed)"), ("blocks", "in blocks"), ("lists", "tuples"),
])
def test_mix_tasks_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_mix_tasks, lambda tasks, seed=0: mix(tasks, seed, mistake), fragment)
