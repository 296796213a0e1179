"""course_lib.family against loops written from the definitions."""
import random

import pytest
import torch

from course_lib.attention import causal_mask
from course_lib.family import SEPARATOR, mix_tasks, prefix_lm_mask


@pytest.mark.parametrize("prefixes, seq", [([0, 3, 6], 6), ([1], 1), ([2, 2], 5), ([0], 0)])
def test_prefix_lm_mask_equals_the_definition(prefixes, seq):
    expected = torch.tensor([[[j <= i or j < p for j in range(seq)] for i in range(seq)] for p in prefixes])
    mask = prefix_lm_mask(torch.tensor(prefixes), seq)
    assert mask.dtype == torch.bool and mask.shape == (len(prefixes), seq, seq)
    assert torch.equal(mask, expected.reshape(len(prefixes), seq, seq))


def test_prefix_lm_mask_spans_decoder_and_encoder():
    """No prefix is GPT's causal mask; a prefix of the whole sequence is BERT's full mask."""
    mask = prefix_lm_mask(torch.tensor([0, 7]), 7)
    assert torch.equal(mask[0], causal_mask(7))
    assert mask[1].all()


def test_mix_tasks_prefixes_every_pair_and_shuffles_them_by_the_seed():
    tasks = {"iso": [(str(d), f"2021-03-{d:02d}") for d in range(1, 30)], "year": [("3/3/21", "2021")] * 3}
    given = {name: list(pairs) for name, pairs in tasks.items()}
    mixed = mix_tasks(tasks, seed=5)
    in_order = [(f"{name}{SEPARATOR}{s}", t) for name, pairs in tasks.items() for s, t in pairs]
    random.Random(5).shuffle(in_order)
    assert mixed == in_order
    assert tasks == given                                   # the caller's lists are left alone
    assert mix_tasks(tasks, seed=5) == mixed and mix_tasks(tasks, seed=6) != mixed
    assert mixed[0][0].startswith(("iso: ", "year: "))
