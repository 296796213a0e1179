"""course_lib.batching: padded batches with their masks, the length-grouping loader, and
language-model windows.

Oracles: masks built by explicit loops from their definition; windows compared with slices
of the sequence taken by hand.
"""
import pytest
import torch

from course_lib.batching import BatchLoader, LMBatch, get_batch, lm_batches, lm_windows, make_batch, pad_sequences
from course_lib.data.tokenizers import BOS_ID, EOS_ID, PAD_ID


def test_pad_sequences():
    out = pad_sequences([[5, 6, 7], [8]])
    assert out.dtype == torch.long and out.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    with pytest.raises(ValueError):
        pad_sequences([])


def test_make_batch_shifts_targets_and_builds_masks():
    sources, targets = [[5, 6, 7], [8]], [[9], [10, 11, 12]]
    b = make_batch(sources, targets)
    assert b.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert b.tgt_in.tolist() == [[BOS_ID, 9, PAD_ID, PAD_ID], [BOS_ID, 10, 11, 12]]
    assert b.tgt_out.tolist() == [[9, EOS_ID, PAD_ID, PAD_ID], [10, 11, 12, EOS_ID]]
    assert b.num_tokens == 2 + 4
    # the masks, from their definition, one entry at a time
    assert b.src_mask.shape == (2, 1, 4) and b.src_mask.dtype == torch.bool
    for i in range(2):
        for s in range(4):
            assert b.src_mask[i, 0, s] == (b.src[i, s] != PAD_ID)
    assert b.tgt_mask.shape == (2, 4, 4) and b.tgt_mask.dtype == torch.bool
    for i in range(2):
        for t in range(4):
            for s in range(4):
                assert b.tgt_mask[i, t, s] == (s <= t and b.tgt_in[i, s] != PAD_ID)
    assert b.to("cpu").src.equal(b.src)
    with pytest.raises(ValueError, match="as many sources as targets"):
        make_batch([[1]], [])


def test_batch_loader_covers_every_pair_once_per_pass():
    pairs = [([4] * (1 + i % 9), [5] * (1 + i % 4)) for i in range(103)]
    loader = BatchLoader(pairs, batch_size=10, shuffle=True, seed=1)
    seen_orders = []
    for _ in range(2):
        seen = []
        for b in loader:
            assert b.src.shape[0] <= 10
            seen += [(tuple(s[s > 3].tolist()), tuple(t[t > 3].tolist())) for s, t in zip(b.src, b.tgt_out)]
        assert sorted(seen) == sorted((tuple(s), tuple(t)) for s, t in pairs)
        seen_orders.append(seen)
    assert seen_orders[0] != seen_orders[1], "each pass draws a new order"
    again = BatchLoader(pairs, batch_size=10, shuffle=True, seed=1)
    assert [b.src.tolist() for b in again][:3] == [b.src.tolist() for b in BatchLoader(pairs, 10, seed=1)][:3]
    capped = BatchLoader(pairs, batch_size=50, shuffle=False, max_tokens=60)
    assert all(b.src.numel() <= 60 and b.tgt_in.numel() <= 60 for b in capped)
    assert sum(b.src.shape[0] for b in capped) == 103 and len(capped) == len(list(capped))


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(1000)
    x, y = get_batch(data, 16, 5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 16)
    for row in range(5):  # each row is a slice of data, and y the slice one further
        start = int(x[row, 0])
        assert torch.equal(x[row], data[start:start + 16]) and torch.equal(y[row], data[start + 1:start + 17])


def test_lm_batches_are_reproducible_from_the_seed():
    data = torch.arange(500)
    first = [b for _, b in zip(range(3), lm_batches(data, 8, 4, seed=3))]
    again = [b for _, b in zip(range(3), lm_batches(data, 8, 4, seed=3))]
    assert all(isinstance(b, LMBatch) and torch.equal(a.inputs, b.inputs) for a, b in zip(first, again))


def test_lm_windows_cover_the_sequence_without_overlap():
    data = torch.arange(8 * 6 + 3)
    windows = lm_windows(data, 8, batch_size=4)
    inputs = torch.cat([w.inputs for w in windows])
    assert [w.inputs.shape[0] for w in windows] == [4, 2]
    assert torch.equal(inputs, data[:48].view(6, 8))
    assert torch.equal(torch.cat([w.targets for w in windows]), data[1:49].view(6, 8))
    spread = lm_windows(torch.arange(8 * 100 + 1), 8, batch_size=2, max_batches=2)
    starts = torch.cat([w.inputs[:, 0] for w in spread]).tolist()
    assert len(starts) == 4 and starts[0] == 0 and starts[-1] == 8 * 99


@pytest.mark.parametrize("call, error, message", [
    (lambda: get_batch(torch.arange(10), 10, 2), ValueError, "block_size"),
    (lambda: lm_windows(torch.arange(10).view(2, 5), 2), ValueError, r"data must have shape \(N\)"),
    (lambda: next(lm_batches([1, 2, 3], 2, 2)), TypeError, "data must be an integer tensor"),
])
def test_windows_refuse_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
