"""course_lib.encoder against PyTorch with the same weights (the oracles).

LayerNorm against torch.nn.LayerNorm; EncoderLayer / Encoder against
torch.nn.TransformerEncoderLayer / torch.nn.TransformerEncoder (batch_first=True) with the
weights copied across, in eval mode. Tolerances: float64 modules, atol 1e-10 for outputs and
gradients (a float64 rounding difference is about 1e-15; any wrong formula is above 1e-3).
"""
import pytest
import torch
from torch import nn

from course_lib.attention import from_key_padding_mask, padding_mask
from course_lib.encoder import Encoder, EncoderLayer, FeedForward, LayerNorm, copy_torch_encoder_layer

from oracles import ATOL, D_FF, D_MODEL, HEADS, assert_same_grads, key_padding, randn
from oracles import torch_layer as _torch_layer


def torch_layer(norm_first, activation="relu", seed=0):
    return _torch_layer(nn.TransformerEncoderLayer, norm_first, activation, seed)


# --- LayerNorm and FeedForward ---------------------------------------------------------

@pytest.mark.parametrize("shape,eps", [((2, 5, 16), 1e-5), ((7, 3), 1e-5), ((4, 1, 2, 6), 0.5)])
def test_layer_norm_matches_torch(shape, eps):
    ref = nn.LayerNorm(shape[-1], eps=eps).double()
    with torch.no_grad():
        ref.weight.uniform_(-2, 2)
        ref.bias.uniform_(-2, 2)
    ours = LayerNorm(shape[-1], eps=eps).double()
    ours.load_state_dict(ref.state_dict())  # same parameter names
    x = randn(*shape) * 3 + 1
    out, expected = ours(x), ref(x)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    upstream = randn(*shape, seed=1, requires_grad=False)
    g_ours = torch.autograd.grad((out * upstream).sum(), [x, ours.weight, ours.bias])
    g_ref = torch.autograd.grad((expected * upstream).sum(), [x, ref.weight, ref.bias])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_layer_norm_starts_as_identity_affine_and_normalizes():
    ln = LayerNorm(8).double()
    assert torch.equal(ln.weight, torch.ones(8)) and torch.equal(ln.bias, torch.zeros(8))
    out = ln(randn(3, 8) * 5 + 2)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation,fn", [("relu", torch.relu), ("gelu", nn.functional.gelu)])
def test_feed_forward_is_position_wise_and_matches_the_formula(activation, fn):
    ff = FeedForward(D_MODEL, D_FF, dropout=0.3, activation=activation).double().eval()
    x = randn(2, 5, D_MODEL)
    expected = fn(x @ ff.linear1.weight.T + ff.linear1.bias) @ ff.linear2.weight.T + ff.linear2.bias
    torch.testing.assert_close(ff(x), expected, atol=ATOL, rtol=0)
    # Each position on its own gives the same result.
    torch.testing.assert_close(ff(x[:, 3:4]), ff(x)[:, 3:4], atol=ATOL, rtol=0)


def test_feed_forward_dropout_sits_between_the_linears():
    ff = FeedForward(4, 8, dropout=0.5).train()
    hidden = []
    ff.linear2.register_forward_hook(lambda m, inp, out: hidden.append(inp[0]))
    ff(torch.randn(1, 50, 4) + 3)  # positive inputs: most ReLU units are active
    zeros = (hidden[0] == 0).float().mean().item()
    assert 0.3 < zeros < 0.9, zeros  # ReLU zeros plus about half dropped


# --- EncoderLayer against torch.nn.TransformerEncoderLayer -----------------------------

@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_encoder_layer_matches_torch_with_padding(norm_first, activation, fast):
    ref = torch_layer(norm_first, activation)
    ours = EncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.1, norm_first=norm_first,
                        activation=activation, fast=fast).double().eval()
    copy_torch_encoder_layer(ref, ours)
    x = randn(3, 6, D_MODEL)
    pad = key_padding(3, 6)
    out = ours(x, mask=from_key_padding_mask(pad))
    expected = ref(x, src_key_padding_mask=pad)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, x)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch_without_mask(norm_first):
    ref = torch_layer(norm_first, seed=1)
    ours = EncoderLayer(D_MODEL, HEADS, D_FF, norm_first=norm_first).double().eval()
    copy_torch_encoder_layer(ref, ours)
    x = randn(2, 1, D_MODEL, seed=2)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=0)


def test_state_dict_names_match_our_attributes():
    layer = EncoderLayer(8, 2, 16)
    assert set(layer.state_dict()) == {
        *(f"self_attn.w_{c}.{p}" for c in "qkvo" for p in ("weight", "bias")),
        *(f"ff.linear{i}.{p}" for i in (1, 2) for p in ("weight", "bias")),
        *(f"norm{i}.{p}" for i in (1, 2) for p in ("weight", "bias"))}
    assert isinstance(layer.norm1, LayerNorm) and isinstance(layer.ff, FeedForward)
    assert layer.dropout1.p == layer.dropout2.p == layer.self_attn.dropout == layer.ff.dropout.p == 0.1


def test_encoder_layer_train_mode_applies_dropout():
    layer = EncoderLayer(8, 2, 16, dropout=0.5)
    x = torch.randn(2, 4, 8)
    assert not torch.allclose(layer.train()(x), layer.eval()(x))
    torch.testing.assert_close(layer.eval()(x), layer(x))  # eval is deterministic


# --- Encoder against torch.nn.TransformerEncoder ---------------------------------------

@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_matches_torch(norm_first):
    num_layers = 3
    torch.manual_seed(5)
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.1, norm_first=norm_first,
                                       batch_first=True)
    final = nn.LayerNorm(D_MODEL) if norm_first else None
    ref = nn.TransformerEncoder(layer, num_layers, norm=final, enable_nested_tensor=False).double().eval()
    with torch.no_grad():  # the clones start equal: make every layer different
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = Encoder(num_layers, D_MODEL, HEADS, D_FF, norm_first=norm_first).double().eval()
    for theirs, mine in zip(ref.layers, ours.layers):
        copy_torch_encoder_layer(theirs, mine)
    assert (ours.norm is None) == (not norm_first)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    x = randn(3, 5, D_MODEL, seed=3)
    pad = key_padding(3, 5)
    out = ours(x, mask=from_key_padding_mask(pad))
    expected = ref(x, src_key_padding_mask=pad)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, x)


@pytest.mark.parametrize("norm_first", [False, True])
def test_padded_positions_do_not_change_real_outputs(norm_first):
    torch.manual_seed(6)
    encoder = Encoder(2, D_MODEL, HEADS, D_FF, norm_first=norm_first).double().eval()
    embed = nn.Embedding(20, D_MODEL).double()
    tokens = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 11, 0, 0]])  # 0 = padding
    other = tokens.clone()
    other[1, 3:] = torch.tensor([13, 17])  # different tokens in the padded slots
    mask = padding_mask(tokens, pad_id=0)
    out, out_other = encoder(embed(tokens), mask), encoder(embed(other), mask)
    real = mask.squeeze(1)
    torch.testing.assert_close(out[real], out_other[real], atol=ATOL, rtol=0)
    assert not torch.allclose(out[~real], out_other[~real])  # the padded slots themselves did change
    # Without the mask the real positions do see the padded slots: the test can fail.
    assert not torch.allclose(encoder(embed(tokens))[real], encoder(embed(other))[real])


# --- bad input -------------------------------------------------------------------------

def test_bad_input_raises_value_error_naming_the_shape():
    layer, ln = EncoderLayer(8, 2, 16), LayerNorm(8)
    with pytest.raises(ValueError, match=r"\(batch, seq, d_model=8\)"):
        layer(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(batch, seq, d_model=8\)"):
        layer(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"\(\.\.\., d_model=8\)"):
        ln(torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"\(batch, seq, d_model=8\)"):
        FeedForward(8, 16)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="torch.bool"):
        layer(torch.randn(2, 3, 8), mask=torch.ones(2, 1, 3))
    with pytest.raises(ValueError, match="mask must broadcast to"):
        layer(torch.randn(2, 3, 8), mask=torch.ones(2, 1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, 16, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        EncoderLayer(10, 3, 16)
    with pytest.raises(ValueError, match="num_layers"):
        Encoder(0, 8, 2, 16)
