"""course_lib.attention against torch.nn.functional.scaled_dot_product_attention (the oracle).

Tolerances: float64 inputs, atol 1e-10 (both compute the same sums in a different order).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.attention import (
    causal_mask,
    from_key_padding_mask,
    padding_mask,
    scaled_dot_product_attention,
    to_key_padding_mask,
)

ATOL = 1e-10


def qkv(*lead, seq_q=4, seq_k=6, d_k=8, d_v=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*lead, *s, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    return make(seq_q, d_k), make(seq_k, d_k), make(seq_k, d_v)


def reference_weights(q, k, mask=None):
    """The weights, computed independently: torch's sdpa applied to the identity as values."""
    eye = torch.eye(k.shape[-2], dtype=q.dtype).expand(*k.shape[:-1], k.shape[-2])
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("seq_q,seq_k", [(4, 6), (1, 1), (1, 7), (5, 1)])
def test_matches_torch_sdpa_and_gradients(lead, seq_q, seq_k):
    q, k, v = qkv(*lead, seq_q=seq_q, seq_k=seq_k)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, reference_weights(q, k), atol=ATOL, rtol=0)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=ATOL, rtol=0)


@pytest.mark.parametrize("mask_kind", ["causal", "padding", "random"])
def test_masks_match_torch_sdpa(mask_kind):
    q, k, v = qkv(2, seq_q=5, seq_k=5)
    if mask_kind == "causal":
        mask = causal_mask(5)
    elif mask_kind == "padding":
        tokens = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 1, 0]])
        mask = padding_mask(tokens, pad_id=0)
    else:
        mask = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.5
        mask[..., 2] = True
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(weights, reference_weights(q, k, mask), atol=ATOL, rtol=0)
    assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.sum(), (q, k, v))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=ATOL, rtol=0)


def test_causal_mask_is_lower_triangular():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool
    for i in range(4):
        for j in range(4):
            assert mask[i, j] == (j <= i)


def test_fully_masked_rows_give_zeros_not_nan_and_finite_gradients():
    q, k, v = qkv(2, seq_q=3, seq_k=4)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of batch 0 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out[0, 1] == 0).all() and (weights[0, 1] == 0).all()
    other = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[1], other[1], atol=ATOL, rtol=0)
    torch.testing.assert_close(out[0, [0, 2]], other[0, [0, 2]], atol=ATOL, rtol=0)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert (grads[0][0, 1] == 0).all()


def test_key_padding_mask_round_trip_matches_torch_convention():
    key_padding = torch.tensor([[False, False, True], [False, True, True]])  # torch: True = ignore
    ours = from_key_padding_mask(key_padding)
    assert ours.shape == (2, 1, 3)
    assert torch.equal(ours[:, 0], ~key_padding)
    assert torch.equal(to_key_padding_mask(ours), key_padding)


def test_dropout_zeroes_weights_and_rescales():
    torch.manual_seed(0)
    q, k, v = qkv(seq_q=200, seq_k=50)
    _, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    _, clean = scaled_dot_product_attention(q, k, v)
    dropped = weights == 0
    assert 0.4 < dropped.double().mean() < 0.6
    torch.testing.assert_close(weights[~dropped], 2 * clean[~dropped])


def test_scaling_is_one_over_sqrt_dk():
    q, k, v = qkv(seq_q=1, seq_k=2, d_k=16)
    _, weights = scaled_dot_product_attention(q, k, v)
    scores = (q @ k.mT).squeeze() / math.sqrt(16)
    torch.testing.assert_close(weights.squeeze(), scores.softmax(-1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("shapes,match", [
    (((4,), (4, 8), (4, 5)), r"q must have shape \(\.\.\., seq, d\)"),
    (((4, 8), (6, 7), (6, 5)), r"last dimension d_k"),
    (((4, 8), (6, 8), (5, 5)), r"same sequence length"),
])
def test_bad_shapes_raise_value_error_naming_the_shape(shapes, match):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(q, k, v)


def test_bad_masks_raise_value_error():
    q, k, v = (t.detach() for t in qkv(2, seq_q=4, seq_k=6))
    with pytest.raises(ValueError, match="torch.bool"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 6))
    with pytest.raises(ValueError, match=r"seq_q=4, seq_k=6"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 5, dtype=torch.bool))
