"""course_lib.efficient against independent computations (the oracles).

- masks: against a double loop over (i, j) written from their definitions;
- sliding-window and block-sparse attention: against torch's F.scaled_dot_product_attention
  given the equivalent explicit mask, outputs and gradients, float64, atol 1e-10;
- a window at least as long as the sequence: against full (or causal) attention;
- linear attention: against the quadratic form of the same kernelized formula,
  (phi(Q) phi(K)^T [lower triangle if causal]) V / row sums, in float64, atol 1e-10;
  its gradients against finite differences (gradcheck);
- the measuring helpers: against allocations and calls whose size and number are known.
"""
import time

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from course_lib.attention import causal_mask, scaled_dot_product_attention
from course_lib.efficient import (
    block_sparse_attention,
    block_sparse_layout,
    block_sparse_mask,
    elu_feature_map,
    linear_attention,
    peak_memory,
    sdpa_backend,
    sliding_window_attention,
    sliding_window_mask,
    time_call,
)

ATOL = 1e-10
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def qkv(*shape, d_v=None, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    d_v = shape[-1] if d_v is None else d_v
    q, k = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(*shape[:-1], d_v, generator=g, dtype=torch.float64)
    return tuple(t.requires_grad_(requires_grad) for t in (q, k, v))


def assert_same_with_grads(out, expected, inputs):
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    upstream = torch.randn_like(out)
    mine = torch.autograd.grad((out * upstream).sum(), inputs)
    theirs = torch.autograd.grad((expected * upstream).sum(), inputs)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# --- masks ------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,window", [(1, 0), (6, 0), (7, 1), (9, 3), (5, 4), (5, 10)])
def test_sliding_window_mask_follows_its_definition(seq, window, causal):
    expected = torch.tensor([[abs(i - j) <= window and (j <= i or not causal) for j in range(seq)]
                             for i in range(seq)])
    mask = sliding_window_mask(seq, window, causal)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_a_window_as_long_as_the_sequence_is_full_or_causal_attention():
    assert sliding_window_mask(8, 7).all()
    assert torch.equal(sliding_window_mask(8, 7, causal=True), causal_mask(8))
    assert torch.equal(sliding_window_mask(8, 0), torch.eye(8, dtype=torch.bool))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,block,neighbours,num_global", [(16, 4, 1, 1), (18, 4, 0, 2), (10, 3, 2, 0), (5, 8, 1, 1)])
def test_block_sparse_mask_follows_its_definition(seq, block, neighbours, num_global, causal):
    def visible(i, j):
        b, c = i // block, j // block
        return (abs(b - c) <= neighbours or c < num_global) and (j <= i or not causal)
    expected = torch.tensor([[visible(i, j) for j in range(seq)] for i in range(seq)])
    assert torch.equal(block_sparse_mask(seq, block, neighbours, num_global, causal), expected)
    num_blocks = -(-seq // block)
    layout = block_sparse_layout(num_blocks, neighbours, num_global, causal)
    assert torch.equal(layout, torch.tensor([[visible(b * block, c * block) for c in range(num_blocks)]
                                             for b in range(num_blocks)]))


def test_masks_reject_negative_sizes():
    for call in (lambda: sliding_window_mask(4, -1), lambda: block_sparse_mask(4, 0),
                 lambda: block_sparse_layout(4, neighbours=-1)):
        with pytest.raises(ValueError):
            call()


# --- local and block-sparse attention -------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,window", [(1, 0), (37, 0), (37, 1), (100, 5), (130, 40), (70, 33), (64, 200)])
def test_sliding_window_attention_equals_sdpa_with_the_mask(seq, window, causal):
    q, k, v = qkv(2, 3, seq, 8, d_v=5, requires_grad=True)
    mask = sliding_window_mask(seq, window, causal)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_same_with_grads(sliding_window_attention(q, k, v, window, causal), expected, (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_as_long_as_the_sequence_equals_full_attention(causal):
    seq = 50
    q, k, v = qkv(2, seq, 16, seed=1)
    full = scaled_dot_product_attention(q, k, v, causal_mask(seq) if causal else None)[0]
    for window in (seq - 1, seq, 1000):
        torch.testing.assert_close(sliding_window_attention(q, k, v, window, causal), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq,block,neighbours,num_global",
                         [(64, 8, 1, 1), (70, 16, 0, 2), (45, 4, 2, 0), (12, 32, 1, 1)])
def test_block_sparse_attention_equals_sdpa_with_the_mask(seq, block, neighbours, num_global, causal):
    q, k, v = qkv(2, 2, seq, 8, d_v=3, seed=2, requires_grad=True)
    mask = block_sparse_mask(seq, block, neighbours, num_global, causal)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = block_sparse_attention(q, k, v, block, neighbours, num_global, causal)
    assert_same_with_grads(out, expected, (q, k, v))


def test_local_attention_is_not_full_attention():
    """The oracle can fail: a short window must change the output."""
    q, k, v = qkv(1, 100, 8, seed=3)
    assert not torch.allclose(sliding_window_attention(q, k, v, 3), scaled_dot_product_attention(q, k, v)[0])


def test_local_attention_memory_grows_linearly():
    """Doubling the sequence doubles the peak memory of local attention (full attention: 4x)."""
    def peak(seq):
        q, k, v = (torch.randn(1, 2, seq, 16) for _ in range(3))
        return peak_memory(lambda: sliding_window_attention(q, k, v, 32), "cpu")
    ratio = peak(2048) / peak(1024)
    assert 1.6 < ratio < 2.4, ratio


def test_local_attention_rejects_cross_attention():
    q, k, v = qkv(4, 8)
    with pytest.raises(ValueError, match="same length"):
        sliding_window_attention(q, k[:3], v[:3], 2)


# --- linear attention ---------------------------------------------------------------------

def quadratic_linear_attention(q, k, v, causal):
    """The same formula, the other way round: the (seq_q, seq_k) kernel matrix first."""
    a = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-2, -1)
    if causal:
        a = a.tril()
    return (a @ v) / a.sum(-1, keepdim=True)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape,d_v", [((2, 3, 10, 4), 6), ((1, 1, 4), 2), ((3, 33, 8), 8)])
def test_linear_attention_equals_its_quadratic_form(shape, d_v, causal):
    q, k, v = qkv(*shape, d_v=d_v, seed=4)
    torch.testing.assert_close(linear_attention(q, k, v, causal, eps=0.0),
                               quadratic_linear_attention(q, k, v, causal), atol=ATOL, rtol=0)
    # the default eps changes nothing visible
    torch.testing.assert_close(linear_attention(q, k, v, causal),
                               quadratic_linear_attention(q, k, v, causal), atol=1e-6, rtol=0)


def test_linear_cross_attention_and_its_causal_check():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, n, 4, generator=g, dtype=torch.float64) for n in (3, 7, 7))
    torch.testing.assert_close(linear_attention(q, k, v, eps=0.0),
                               quadratic_linear_attention(q, k, v, False), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="seq_q == seq_k"):
        linear_attention(q, k, v, causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_gradients(causal):
    q, k, v = qkv(1, 5, 3, seed=6, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: linear_attention(*t, causal=causal), (q, k, v))


def test_linear_attention_is_causal_when_asked():
    q, k, v = qkv(1, 12, 4, seed=7)
    out = linear_attention(q, k, v, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, 6:], v2[:, 6:] = torch.randn(1, 6, 4, dtype=torch.float64), torch.randn(1, 6, 4, dtype=torch.float64)
    changed = linear_attention(q, k2, v2, causal=True)
    torch.testing.assert_close(changed[:, :6], out[:, :6], atol=ATOL, rtol=0)
    assert not torch.allclose(changed[:, 6:], out[:, 6:])
    assert not torch.allclose(linear_attention(q, k, v), out)


def test_elu_feature_map_is_positive():
    x = torch.linspace(-30, 30, 101, dtype=torch.float64)
    phi = elu_feature_map(x)
    assert (phi > 0).all()
    torch.testing.assert_close(phi[x > 0], x[x > 0] + 1)


# --- measuring --------------------------------------------------------------------------

def test_peak_memory_counts_what_is_held_at_once():
    def two_in_turn():
        a = torch.ones(1000, 1000)      # 4 MB
        del a
        return torch.ones(500, 1000)    # 2 MB, reusing nothing of a

    def two_at_once():
        a, b = torch.ones(1000, 1000), torch.ones(500, 1000)
        return a + b[:1]

    assert peak_memory(two_in_turn, "cpu") == pytest.approx(4_000_000, rel=0.01)
    assert peak_memory(two_at_once, "cpu") == pytest.approx(10_000_000, rel=0.01)
    assert peak_memory(lambda: None, "cpu") < 1_000


def test_peak_memory_of_naive_attention_holds_the_scores():
    q = torch.randn(1, 2, 512, 16)
    scores_bytes = 2 * 512 * 512 * 4
    naive = peak_memory(lambda: scaled_dot_product_attention(q, q, q), "cpu")
    assert naive >= scores_bytes
    assert peak_memory(lambda: F.scaled_dot_product_attention(q, q, q), "cpu") < scores_bytes / 4


def test_peak_memory_rejects_other_devices():
    with pytest.raises(ValueError, match="cpu or cuda"):
        peak_memory(lambda: None, "meta")


def test_time_call_warms_up_then_takes_the_fastest():
    calls = []
    seconds = time_call(lambda: calls.append(1), "cpu", repeats=4, warmup=2)
    assert len(calls) == 6
    assert 0 <= seconds < 0.1
    naps = iter([0.0, 0.05, 0.02, 0.08])  # the warm-up call, then three timed ones
    assert 0.02 <= time_call(lambda: time.sleep(next(naps)), "cpu", repeats=3) < 0.05


def test_sdpa_backend_names_the_kernel_that_ran():
    q = torch.randn(1, 2, 64, 16)
    assert sdpa_backend(q, q, q) == "flash (cpu)"
    with sdpa_kernel([SDPBackend.MATH]):
        assert sdpa_backend(q, q, q, is_causal=True) == "math"


@CUDA
def test_gpu_paths():
    q = torch.randn(1, 4, 1024, 64, device="cuda", dtype=torch.bfloat16)
    assert sdpa_backend(q, q, q) in ("flash", "cudnn", "mem-efficient")
    with sdpa_kernel([SDPBackend.MATH]):
        assert sdpa_backend(q, q, q) == "math"
    assert peak_memory(lambda: torch.empty(1 << 20, device="cuda"), "cuda") == 4 << 20
    assert time_call(lambda: q @ q.transpose(-2, -1), "cuda") > 0
    g = q.float()
    mask = sliding_window_mask(1024, 100, True, "cuda")
    torch.testing.assert_close(sliding_window_attention(g, g, g, 100, causal=True),
                               F.scaled_dot_product_attention(g, g, g, attn_mask=mask), atol=1e-4, rtol=1e-4)
