"""course_lib.positional against independent computations from the formulas (the oracles).

The sinusoidal table is checked against a float64 loop over (pos, i) with Python's math,
and against a numpy version written per column; the rotation property with rotation
matrices built from the frequencies alone. Tolerances: atol 1e-12 in float64, 1e-6 for
float32 tables (float32 rounding of values in [-1, 1]); the modules are compared in eval
mode, where they must be exact sums.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_encoding,
)


def formula_by_loops(max_len, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same), one entry at a time."""
    table = [[0.0] * d_model for _ in range(max_len)]
    for pos in range(max_len):
        for i in range(d_model // 2):
            angle = pos / math.pow(10000.0, 2 * i / d_model)
            table[pos][2 * i] = math.sin(angle)
            table[pos][2 * i + 1] = math.cos(angle)
    return torch.tensor(table, dtype=torch.float64)


def formula_by_columns(max_len, d_model):
    """The same table with numpy, column by column: column j uses the frequency of its pair j // 2."""
    pos = np.arange(max_len, dtype=np.float64)
    columns = [(np.sin if j % 2 == 0 else np.cos)(pos / np.power(1e4, (j - j % 2) / d_model))
               for j in range(d_model)]
    return torch.from_numpy(np.stack(columns, axis=1))


def rotation(k, d_model):
    """Block-diagonal R_k with PE(pos + k) = R_k PE(pos): one 2x2 rotation per frequency pair."""
    R = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i in range(d_model // 2):
        theta = k * 10000.0 ** (-2 * i / d_model)
        c, s = math.cos(theta), math.sin(theta)
        # [sin(a + t), cos(a + t)] = [[cos t, sin t], [-sin t, cos t]] @ [sin a, cos a]
        R[2 * i: 2 * i + 2, 2 * i: 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return R


# --- sinusoidal_encoding ----------------------------------------------------------------

@pytest.mark.parametrize("max_len,d_model", [(1, 2), (7, 4), (60, 16), (128, 64), (5, 512)])
def test_matches_the_formula_in_float64(max_len, d_model):
    pe = sinusoidal_encoding(max_len, d_model, dtype=torch.float64)
    assert pe.shape == (max_len, d_model) and pe.dtype == torch.float64
    torch.testing.assert_close(pe, formula_by_loops(max_len, d_model), atol=1e-12, rtol=0)
    torch.testing.assert_close(pe, formula_by_columns(max_len, d_model), atol=1e-12, rtol=0)


def test_default_dtype_is_torchs_default_and_long_tables_stay_accurate():
    pe = sinusoidal_encoding(5000, 32)
    assert pe.dtype == torch.get_default_dtype() and pe.device.type == "cpu"
    # position 4999 in float32 arithmetic would be off by ~1e-4; computed in float64 it is not
    torch.testing.assert_close(pe.double(), formula_by_columns(5000, 32), atol=1e-6, rtol=0)


def test_first_row_and_first_pair():
    pe = sinusoidal_encoding(50, 8, dtype=torch.float64)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    positions = torch.arange(50, dtype=torch.float64)
    torch.testing.assert_close(pe[:, 0], positions.sin(), atol=1e-12, rtol=0)  # frequency 1
    torch.testing.assert_close(pe[:, 1], positions.cos(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("d_model", [2, 16, 64])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_a_shift_by_k_is_a_fixed_rotation_for_every_position(d_model, k):
    pe = sinusoidal_encoding(200, d_model, dtype=torch.float64)
    R = rotation(k, d_model)
    torch.testing.assert_close(R @ R.T, torch.eye(d_model, dtype=torch.float64), atol=1e-12, rtol=0)
    # row by row: PE(pos + k) = R_k PE(pos), for pos = 0 .. 199 - k
    torch.testing.assert_close(pe[k:], pe[:-k] @ R.T, atol=1e-10, rtol=0)


def test_dot_products_depend_only_on_the_offset():
    pe = sinusoidal_encoding(100, 32, dtype=torch.float64)
    gram = pe @ pe.T
    for k in (0, 3, 20):
        expected = sum(math.cos(k * 10000.0 ** (-2 * i / 32)) for i in range(16))
        diagonal = torch.diagonal(gram, offset=k)
        torch.testing.assert_close(diagonal, torch.full_like(diagonal, expected), atol=1e-10, rtol=0)


@pytest.mark.parametrize("max_len,d_model,named,error", [
    (10, 7, "d_model", ValueError), (10, 1, "d_model", ValueError), (10, 0, "d_model", ValueError),
    (10, 8.0, "d_model", TypeError), (0, 8, "max_len", ValueError), (-1, 8, "max_len", ValueError),
    (10.0, 8, "max_len", TypeError)])
def test_bad_sizes_are_refused(max_len, d_model, named, error):
    with pytest.raises(error, match=named):
        sinusoidal_encoding(max_len, d_model)


def test_odd_d_model_error_says_why():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_encoding(10, 7)


# --- SinusoidalPositionalEncoding -------------------------------------------------------

def x_of(batch=2, seq=5, d_model=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq, d_model, generator=g, dtype=dtype, requires_grad=True)


def test_sinusoidal_module_adds_the_table_in_eval():
    module = SinusoidalPositionalEncoding(8, max_len=20).eval()
    x = x_of()
    out = module(x)
    assert out.shape == x.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, x + formula_by_loops(5, 8), atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


def test_sinusoidal_table_is_a_non_persistent_buffer():
    module = SinusoidalPositionalEncoding(8, max_len=20)
    assert dict(module.named_buffers())["pe"].shape == (20, 8)
    assert "pe" not in module.state_dict() and list(module.parameters()) == []
    SinusoidalPositionalEncoding(8, max_len=20).load_state_dict(module.state_dict())  # strict load works


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_output_dtype_follows_the_input(dtype):
    for module in (SinusoidalPositionalEncoding(8, max_len=10), LearnedPositionalEmbedding(10, 8)):
        assert module.eval()(torch.zeros(1, 3, 8, dtype=dtype)).dtype == dtype


def test_output_device_follows_the_input():
    # the meta device stands in for a GPU: nothing is computed, but a tensor left on the CPU would show
    for module in (SinusoidalPositionalEncoding(8, max_len=10), LearnedPositionalEmbedding(10, 8)):
        assert module.eval()(torch.zeros(1, 3, 8, device="meta")).device.type == "meta"
    if torch.cuda.is_available():
        x = torch.zeros(1, 3, 8, device="cuda")
        assert SinusoidalPositionalEncoding(8, max_len=10).to("cuda").eval()(x).device == x.device


def check_dropout(module, x, clean, p):
    module.train()
    out = module(x)
    dropped = out == 0
    assert 0.3 < dropped.double().mean().item() < 0.7, "about a fraction p of the entries is zeroed"
    torch.testing.assert_close(out[~dropped], clean[~dropped] / (1 - p), atol=1e-6, rtol=0)
    assert not torch.equal(module(x), out), "a new mask on every call in train mode"
    module.eval()
    assert torch.equal(module(x), module(x))
    torch.testing.assert_close(module(x), clean, atol=1e-6, rtol=0)


def test_dropout_in_train_and_eval():
    torch.manual_seed(0)
    x = x_of(4, 50, 16).detach()
    sinusoidal = SinusoidalPositionalEncoding(16, max_len=64, dropout=0.5)
    check_dropout(sinusoidal, x, x + formula_by_loops(50, 16), 0.5)
    learned = LearnedPositionalEmbedding(64, 16, dropout=0.5)
    check_dropout(learned, x, x + learned.embedding.weight[:50].double(), 0.5)
    # no dropout: train mode changes nothing
    assert torch.equal(SinusoidalPositionalEncoding(16, 64, dropout=0.0).train()(x),
                       SinusoidalPositionalEncoding(16, 64, dropout=0.0).eval()(x))


@pytest.mark.parametrize("make", [lambda: SinusoidalPositionalEncoding(8, max_len=6),
                                  lambda: LearnedPositionalEmbedding(6, 8)])
def test_bad_inputs_raise_value_errors(make):
    module = make()
    module(torch.zeros(2, 6, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=6"):
        module(torch.zeros(2, 7, 8))
    for shape in [(2, 5, 4), (5, 8), (1, 2, 5, 8)]:
        with pytest.raises(ValueError, match=r"\(batch, seq, d_model=8\)"):
            module(torch.zeros(*shape))


# --- LearnedPositionalEmbedding ---------------------------------------------------------

def test_learned_positions_add_one_row_per_position_and_learn_from_their_gradient():
    module = LearnedPositionalEmbedding(10, 8).double().eval()
    assert isinstance(module.embedding, nn.Embedding) and module.embedding.weight.shape == (10, 8)
    assert 0.01 < module.embedding.weight.std().item() < 0.03  # N(0, 0.02^2) as BERT / GPT-2
    x = x_of(3, 6, 8)
    out = module(x)
    expected = x + F.embedding(torch.arange(6).expand(3, 6), module.embedding.weight)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    grad = module.embedding.weight.grad
    torch.testing.assert_close(grad[:6], upstream.sum(0), atol=1e-12, rtol=0)
    assert (grad[6:] == 0).all(), "positions beyond the sequence get no gradient"
    assert "embedding.weight" in module.state_dict()


# --- TokenEmbedding ---------------------------------------------------------------------

def test_token_embedding_scales_by_sqrt_d_model():
    torch.manual_seed(0)
    module = TokenEmbedding(50, 64)
    tokens = torch.randint(0, 50, (3, 7))
    out = module(tokens)
    assert out.shape == (3, 7, 64)
    expected = module.embedding.weight[tokens] * 8.0
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # initialised N(0, 1/d_model): after the sqrt(d_model) factor, entries have unit variance
    assert 0.9 < module(torch.arange(50).unsqueeze(0)).std().item() < 1.1


def test_token_embedding_padding_row_is_zero_and_gets_no_gradient():
    module = TokenEmbedding(10, 8, padding_idx=0)
    assert isinstance(module.embedding, nn.Embedding)
    assert (module.embedding.weight[0] == 0).all()
    tokens = torch.tensor([[3, 4, 0, 0]])
    out = module(tokens)
    assert (out[0, 2:] == 0).all()
    out.sum().backward()
    assert (module.embedding.weight.grad[0] == 0).all() and (module.embedding.weight.grad[3] != 0).all()


def test_output_projection_can_be_tied_to_the_embedding():
    module = TokenEmbedding(10, 8)
    projection = nn.Linear(8, 10, bias=False)
    projection.weight = module.embedding.weight
    logits = projection(module(torch.tensor([[1, 2]])))
    logits.sum().backward()
    assert projection.weight is module.embedding.weight and module.embedding.weight.grad is not None


@pytest.mark.parametrize("tokens", [torch.tensor([1, 2, 3]), torch.zeros(2, 3), torch.zeros(1, 2, 3, dtype=torch.long)])
def test_token_embedding_refuses_bad_ids(tokens):
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        TokenEmbedding(10, 8)(tokens)
