"""course_lib.multihead against torch.nn.MultiheadAttention with the same weights (the oracle).

Tolerances: float64 modules, atol 1e-10 for outputs, weights and gradients.
"""
import pytest
import torch
from torch import nn

from course_lib.attention import causal_mask, from_key_padding_mask, to_key_padding_mask
from course_lib.multihead import MultiHeadAttention, copy_torch_attention, merge_heads, split_heads, to_torch_attention

from oracles import ATOL, assert_same_grads


def pair(d_model, num_heads, fast=False, bias=True, seed=0):
    """Our module and torch's, with torch's weights copied into ours."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d_model, num_heads, bias=bias, batch_first=True).double().eval()
    ours = MultiHeadAttention(d_model, num_heads, bias=bias, fast=fast).double().eval()
    copy_torch_attention(ref, ours)
    return ours, ref


def inputs(batch, seq_q, seq_k, d_model, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq_q, d_model, generator=g, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(batch, seq_k, d_model, generator=g, dtype=torch.float64, requires_grad=True)
    return x, mem


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("batch,seq,d_model,heads", [(2, 5, 16, 4), (1, 1, 8, 2), (3, 7, 12, 3), (2, 4, 8, 1)])
def test_self_attention_matches_torch(fast, batch, seq, d_model, heads):
    ours, ref = pair(d_model, heads, fast)
    x, _ = inputs(batch, seq, seq, d_model)
    out, weights = ours(x)
    expected, expected_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    if fast:
        assert weights is None
    else:
        torch.testing.assert_close(weights, expected_w, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, (x,))


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("seq_q,seq_k", [(3, 6), (1, 4), (5, 1)])
def test_cross_attention_with_padding_matches_torch(fast, seq_q, seq_k):
    ours, ref = pair(16, 4, fast, seed=2)
    x, mem = inputs(2, seq_q, seq_k, 16)
    key_padding = torch.zeros(2, seq_k, dtype=torch.bool)
    key_padding[1, seq_k // 2 + 1:] = True  # torch's convention: True = ignore
    out, weights = ours(x, mem, mem, mask=from_key_padding_mask(key_padding))
    expected, expected_w = ref(x, mem, mem, key_padding_mask=key_padding, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    if not fast:
        torch.testing.assert_close(weights, expected_w, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, (x, mem))


@pytest.mark.parametrize("fast", [False, True])
def test_causal_and_padding_masks_together_match_torch(fast):
    ours, ref = pair(8, 2, fast, bias=False, seed=3)
    x, _ = inputs(2, 5, 5, 8)
    tokens_pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    mask = causal_mask(5) & from_key_padding_mask(tokens_pad)
    out, _ = ours(x, mask=mask)
    expected, _ = ref(x, x, x, attn_mask=~causal_mask(5), key_padding_mask=to_key_padding_mask(
        from_key_padding_mask(tokens_pad)), need_weights=False)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, (x,))


def test_per_head_mask_is_applied_per_head():
    ours, ref = pair(8, 2, seed=4)
    x, _ = inputs(1, 4, 4, 8)
    mask = torch.stack([causal_mask(4), torch.ones(4, 4, dtype=torch.bool)]).unsqueeze(0)  # (1, 2, 4, 4)
    _, weights = ours(x, mask=mask)
    future = ~causal_mask(4)
    assert (weights[0, 0][future] == 0).all() and (weights[0, 1][future] > 0).all()
    out, _ = ours(x, mask=mask)
    expected, _ = ref(x, x, x, attn_mask=~mask[0], need_weights=False)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fast", [False, True])
def test_query_with_nothing_to_attend_to_gives_zeros(fast):
    ours, _ = pair(8, 2, fast)
    x, _ = inputs(1, 3, 3, 8)
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    mask[0, 1] = False
    out, _ = ours(x, mask=mask)
    assert torch.isfinite(out).all()
    # W^O of a zero vector is its bias.
    torch.testing.assert_close(out[0, 1], ours.w_o.bias, atol=ATOL, rtol=0)


def test_fast_and_naive_paths_agree_in_float32_with_dropout_off():
    naive, _ = pair(32, 4)
    fast = MultiHeadAttention(32, 4, fast=True).double()
    fast.load_state_dict(naive.state_dict())
    x, mem = inputs(2, 6, 9, 32)
    torch.testing.assert_close(naive.float()(x.float(), mem.float())[0], fast.float()(x.float(), mem.float())[0],
                               atol=1e-5, rtol=1e-5)


def test_split_and_merge_heads_are_inverse_and_take_contiguous_features():
    x = torch.arange(2 * 3 * 8).reshape(2, 3, 8)
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 2)
    assert torch.equal(heads[1, 2, 0], x[1, 0, 4:6])  # head 2 of token 0 = features 4..5
    assert torch.equal(merge_heads(heads), x)


@pytest.mark.parametrize("call,match", [
    (lambda m: m(torch.randn(2, 3)), r"\(batch, seq, d_model=8\)"),
    (lambda m: m(torch.randn(2, 3, 7)), r"d_model=8"),
    (lambda m: m(torch.randn(2, 3, 8), torch.randn(3, 4, 8)), "batch size"),
    (lambda m: m(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8)), "same length"),
    (lambda m: m(torch.randn(2, 3, 8), mask=torch.ones(3, 3)), "torch.bool"),
    (lambda m: m(torch.randn(2, 3, 8), mask=torch.ones(2, 4, 3, dtype=torch.bool)), r"seq_q=3, seq_k=3"),
])
def test_bad_input_raises_value_error_naming_the_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call(MultiHeadAttention(8, 2))


def test_d_model_not_divisible_by_heads_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("bias", [True, False])
def test_weight_copies_round_trip_between_ours_and_torch(bias):
    ours, ref = pair(12, 3, bias=bias)
    back = to_torch_attention(ours, 3)
    for (name, a), (_, b) in zip(ref.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    x, _ = inputs(2, 4, 4, 12)
    torch.testing.assert_close(back(x, x, x)[0], ours(x)[0], atol=ATOL, rtol=0)
