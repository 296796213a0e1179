"""course_lib.decoder against PyTorch with the same weights (the oracles).

DecoderLayer / Decoder against torch.nn.TransformerDecoderLayer / torch.nn.TransformerDecoder
(batch_first=True) with the weights copied across, in eval mode, with causal and padding
masks; the whole Transformer against torch's encoder and decoder stacks fed by embeddings and
positions computed here from the formulas; parameter counts against torch.nn.Transformer.
Tolerances: float64 modules, atol 1e-10 for outputs and gradients (a float64 rounding
difference is about 1e-15; any wrong formula is above 1e-3).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import causal_mask, from_key_padding_mask
from course_lib.decoder import Decoder, DecoderLayer, Transformer, copy_torch_decoder_layer, target_mask
from course_lib.encoder import copy_torch_encoder_layer

from oracles import ATOL, D_FF, D_MODEL, HEADS, assert_same_grads, key_padding, randn, randomize_norms
from oracles import torch_layer as _torch_layer


def torch_layer(norm_first, activation="relu", seed=0):
    return _torch_layer(nn.TransformerDecoderLayer, norm_first, activation, seed)


def our_layer(ref, norm_first, activation="relu", fast=False):
    ours = DecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.1, norm_first=norm_first, activation=activation,
                        fast=fast).double().eval()
    copy_torch_decoder_layer(ref, ours)
    return ours


def masks(batch, tgt, src):
    """Ours (True = may attend) and torch's (True = ignore): causal + target padding, source padding."""
    tgt_pad, src_pad = key_padding(batch, tgt), key_padding(batch, src)
    ours = {"tgt_mask": causal_mask(tgt) & from_key_padding_mask(tgt_pad),
            "memory_mask": from_key_padding_mask(src_pad)}
    theirs = {"tgt_mask": ~causal_mask(tgt), "tgt_key_padding_mask": tgt_pad,
              "memory_key_padding_mask": src_pad}
    return ours, theirs


# --- DecoderLayer ----------------------------------------------------------------------

@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch_with_causal_and_padding_masks(norm_first, activation, fast):
    ref = torch_layer(norm_first, activation)
    ours = our_layer(ref, norm_first, activation, fast)
    x, memory = randn(3, 6, D_MODEL, seed=1), randn(3, 5, D_MODEL, seed=2)
    our_masks, torch_masks = masks(3, 6, 5)
    out = ours(x, memory, **our_masks)
    expected = ref(x, memory, **torch_masks)
    assert out.shape == (3, 6, D_MODEL)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, (x, memory))


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_without_masks_and_other_lengths_matches_torch(norm_first):
    ref = torch_layer(norm_first, seed=3)
    ours = our_layer(ref, norm_first)
    for tgt, src in ((1, 7), (5, 1), (4, 4)):
        x, memory = randn(2, tgt, D_MODEL, seed=tgt), randn(2, src, D_MODEL, seed=10 + src)
        torch.testing.assert_close(ours(x, memory), ref(x, memory), atol=ATOL, rtol=0)


def test_dropout_is_active_in_training_only():
    layer = DecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.5).double()
    x, memory = randn(2, 4, D_MODEL, requires_grad=False), randn(2, 3, D_MODEL, seed=1, requires_grad=False)
    assert not torch.equal(layer(x, memory), layer(x, memory))
    layer.eval()
    assert torch.equal(layer(x, memory), layer(x, memory))


# --- Decoder ---------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_matches_torch(norm_first):
    torch.manual_seed(4)
    layer = nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, dropout=0.1, norm_first=norm_first,
                                       batch_first=True)
    ref = nn.TransformerDecoder(layer, 3, norm=nn.LayerNorm(D_MODEL) if norm_first else None).double().eval()
    for i, torch_sub in enumerate(ref.layers):  # TransformerDecoder deep-copies: make the layers differ
        for p in torch_sub.parameters():
            nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(i * 100 + p.numel()))
    randomize_norms(ref, 5)
    ours = Decoder(3, D_MODEL, HEADS, D_FF, dropout=0.1, norm_first=norm_first).double().eval()
    for mine, theirs in zip(ours.layers, ref.layers):
        copy_torch_decoder_layer(theirs, mine)
    assert (ours.norm is None) == (not norm_first)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    x, memory = randn(2, 5, D_MODEL, seed=6), randn(2, 7, D_MODEL, seed=7)
    our_masks, torch_masks = masks(2, 5, 7)
    out = ours(x, memory, **our_masks)
    expected = ref(x, memory, **torch_masks)
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)
    assert_same_grads(ours, ref, out, expected, (x, memory))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("d_model,heads,n_enc,n_dec,d_ff", [(512, 8, 6, 6, 2048), (64, 4, 2, 3, 96)])
def test_stack_parameter_count_equals_torch_transformer(norm_first, d_model, heads, n_enc, n_dec, d_ff):
    with torch.device("meta"):  # counts only: no memory, no initialization work
        ref = nn.Transformer(d_model, heads, n_enc, n_dec, d_ff, norm_first=norm_first, batch_first=True)
        ours = Transformer(11, 13, d_model, heads, n_enc, n_dec, d_ff, norm_first=norm_first)
    count = lambda m: sum(p.numel() for p in m.parameters())
    # nn.Transformer always ends both stacks with a LayerNorm (2 * d_model parameters each);
    # a post-LN stack's last layer already normalizes, so ours has none there.
    final_norms = 0 if norm_first else 2 * 2 * d_model
    assert count(ours.encoder) + count(ours.decoder) == count(ref) - final_norms
    assert count(ours.decoder) == count(ref.decoder) - final_norms // 2


# --- Transformer -----------------------------------------------------------------------

def sinusoids(seq, d_model):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...), one number at a time."""
    return torch.tensor([[math.sin(pos / 10000 ** (i / d_model)) if i % 2 == 0
                          else math.cos(pos / 10000 ** ((i - 1) / d_model)) for i in range(d_model)]
                         for pos in range(seq)], dtype=torch.float64)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch_stacks_fed_by_the_paper_formulas(norm_first):
    torch.manual_seed(8)
    torch.set_default_dtype(torch.float64)  # so that the positional table is built in float64 too
    try:
        model = Transformer(20, 23, D_MODEL, HEADS, 2, 3, D_FF, dropout=0.1, norm_first=norm_first).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, norm_first=norm_first,
                                                           batch_first=True), 2,
                                norm=nn.LayerNorm(D_MODEL) if norm_first else None,
                                enable_nested_tensor=False).double().eval()
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D_MODEL, HEADS, D_FF, norm_first=norm_first,
                                                           batch_first=True), 3,
                                norm=nn.LayerNorm(D_MODEL) if norm_first else None).double().eval()
    with torch.no_grad():  # distinct weights in every layer, then copied into ours
        for theirs in list(enc.layers) + list(dec.layers):
            for p in theirs.parameters():
                p.normal_(0, 0.3)
    randomize_norms(enc, 10)
    randomize_norms(dec, 11)
    for mine, theirs in zip(model.encoder.layers, enc.layers):
        copy_torch_encoder_layer(theirs, mine)
    for mine, theirs in zip(model.decoder.layers, dec.layers):
        copy_torch_decoder_layer(theirs, mine)
    if norm_first:
        model.encoder.norm.load_state_dict(enc.norm.state_dict())
        model.decoder.norm.load_state_dict(dec.norm.state_dict())

    src = torch.tensor([[3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 1, 1, 1]])
    tgt = torch.tensor([[2, 5, 7, 9, 1], [2, 8, 1, 1, 1]])
    src_pad, tgt_pad = src == 1, tgt == 1
    logits = model(src, tgt, from_key_padding_mask(src_pad), target_mask(tgt, pad_id=1))

    def embed(tokens, weight):
        return F.embedding(tokens, weight) * math.sqrt(D_MODEL) + sinusoids(tokens.shape[1], D_MODEL)
    memory = enc(embed(src, model.src_embed.embedding.weight), src_key_padding_mask=src_pad)
    hidden = dec(embed(tgt, model.tgt_embed.embedding.weight), memory, tgt_mask=~causal_mask(5),
                 tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
    expected = hidden @ model.tgt_embed.embedding.weight.T + model.generator.bias  # tied weights
    assert logits.shape == (2, 5, 23)
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("fast", [False, True])
def test_output_at_t_does_not_depend_on_target_tokens_after_t(fast):
    torch.manual_seed(12)
    model = Transformer(30, 30, D_MODEL, HEADS, 2, 2, D_FF, fast=fast).double().eval()
    src = torch.randint(3, 30, (2, 6))
    tgt = torch.randint(3, 30, (2, 7))
    logits = model(src, tgt, tgt_mask=causal_mask(7))
    g = torch.Generator().manual_seed(13)
    for t in range(6):
        changed = tgt.clone()
        changed[:, t + 1:] = torch.randint(3, 30, (2, 6 - t), generator=g)
        assert not torch.equal(changed, tgt)
        torch.testing.assert_close(model(src, changed, tgt_mask=causal_mask(7))[:, :t + 1], logits[:, :t + 1],
                                   atol=1e-12, rtol=0)
        # The check can fail: without the causal mask, the future leaks into position t.
        leaked = model(src, changed)[:, :t + 1] - model(src, tgt)[:, :t + 1]
        assert leaked.abs().max() > 1e-3


def test_padded_source_tokens_do_not_change_the_output():
    torch.manual_seed(14)
    model = Transformer(30, 25, D_MODEL, HEADS, 2, 2, D_FF).double().eval()
    src = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 11, 12, 13, 14]])
    tgt = torch.tensor([[1, 3, 4], [1, 5, 6]])
    other = src.clone()
    other[0, 4:] = torch.tensor([20, 21])  # different ids in the padded slots
    logits = model(src, tgt, src_mask=src.ne(0).unsqueeze(1), tgt_mask=causal_mask(3))
    torch.testing.assert_close(model(other, tgt, src_mask=src.ne(0).unsqueeze(1), tgt_mask=causal_mask(3)),
                               logits, atol=1e-12, rtol=0)
    assert (model(other, tgt, tgt_mask=causal_mask(3)) - logits)[0].abs().max() > 1e-3  # unmasked, it shows


def test_encode_decode_is_forward_before_the_generator():
    model = Transformer(12, 14, D_MODEL, HEADS, 1, 2, D_FF).eval()
    src, tgt = torch.randint(0, 12, (2, 5)), torch.randint(0, 14, (2, 3))
    memory = model.encode(src)
    assert memory.shape == (2, 5, D_MODEL)
    hidden = model.decode(tgt, memory, tgt_mask=causal_mask(3))
    assert hidden.shape == (2, 3, D_MODEL)
    torch.testing.assert_close(model.generator(hidden), model(src, tgt, tgt_mask=causal_mask(3)))


def test_weight_tying_shares_one_tensor():
    tied = Transformer(12, 14, D_MODEL, HEADS, 1, 1, D_FF)
    untied = Transformer(12, 14, D_MODEL, HEADS, 1, 1, D_FF, tie_weights=False)
    assert tied.generator.weight is tied.tgt_embed.embedding.weight
    assert untied.generator.weight is not untied.tgt_embed.embedding.weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # parameters() lists a shared tensor once
    assert count(untied) - count(tied) == 14 * D_MODEL
    # One tensor, so both uses add to one gradient.
    logits = tied(torch.randint(0, 12, (2, 4)), torch.randint(0, 14, (2, 3)))
    logits.sum().backward()
    assert tied.tgt_embed.embedding.weight.grad is tied.generator.weight.grad


def test_shared_embeddings_are_one_tensor_for_source_target_and_output():
    shared = Transformer(12, 12, D_MODEL, HEADS, 1, 1, D_FF, share_embeddings=True)
    assert shared.src_embed.embedding.weight is shared.tgt_embed.embedding.weight is shared.generator.weight
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(Transformer(12, 12, D_MODEL, HEADS, 1, 1, D_FF)) - count(shared) == 12 * D_MODEL
    shared(torch.randint(0, 12, (2, 4)), torch.randint(0, 12, (2, 3))).sum().backward()
    grad = shared.src_embed.embedding.weight.grad
    assert grad is shared.generator.weight.grad and grad[:, 0].abs().sum() > 0
    with pytest.raises(ValueError, match="src_vocab_size must be equal to tgt_vocab_size"):
        Transformer(12, 14, D_MODEL, HEADS, 1, 1, D_FF, share_embeddings=True)


def test_stack_matrices_start_xavier_uniform():
    model = Transformer(12, 14, 64, 4, 2, 2, 128)
    for name, p in list(model.encoder.named_parameters()) + list(model.decoder.named_parameters()):
        if p.dim() == 2:
            bound = math.sqrt(6 / sum(p.shape))
            assert p.abs().max() <= bound, name
            assert abs(p.std().item() / (bound / math.sqrt(3)) - 1) < 0.1, name


def test_target_mask_is_causal_and_hides_padding():
    tgt = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    mask = target_mask(tgt, pad_id=0)
    expected = torch.tensor([[[key <= query and tgt[b, key] != 0 for key in range(4)] for query in range(4)]
                             for b in range(2)])
    assert mask.dtype == torch.bool and torch.equal(mask, expected)


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda m: m(torch.randn(2, 3, 8), torch.randn(2, 4, 16)), r"\(batch, tgt, d_model=16\)"),
    (lambda m: m(torch.randn(3, 16), torch.randn(2, 4, 16)), r"\(batch, tgt, d_model=16\)"),
    (lambda m: m(torch.randn(2, 3, 16), torch.randn(2, 4, 8)), r"memory must have shape \(batch=2, src, d_model=16\)"),
    (lambda m: m(torch.randn(2, 3, 16), torch.randn(3, 4, 16)), r"memory must have shape \(batch=2"),
    (lambda m: m(torch.randn(2, 3, 16), torch.randn(2, 4, 16), tgt_mask=torch.ones(3, 3)), "torch.bool"),
    (lambda m: m(torch.randn(2, 3, 16), torch.randn(2, 4, 16), tgt_mask=torch.ones(4, 4, dtype=torch.bool)),
     r"seq_q=3, seq_k=3"),
    (lambda m: m(torch.randn(2, 3, 16), torch.randn(2, 4, 16), memory_mask=torch.ones(2, 1, 3, dtype=torch.bool)),
     r"seq_q=3, seq_k=4"),
])
def test_decoder_layer_bad_input_raises_value_error_naming_the_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call(DecoderLayer(16, 4, 32))


@pytest.mark.parametrize("call,match", [
    (lambda m: m(torch.randn(2, 5), torch.randint(0, 9, (2, 3))), r"src must be .* \(batch, src\)"),
    (lambda m: m(torch.randint(0, 9, (2, 5)), torch.randint(0, 9, (3, 3))), r"tgt must have shape \(batch=2, tgt\)"),
    (lambda m: m(torch.randint(0, 9, (2, 5)), torch.randint(0, 9, (2, 3, 1))), r"tgt must have shape \(batch=2, tgt\)"),
    (lambda m: m(torch.randint(0, 9, (2, 5)), torch.randint(0, 9, (2, 40))), "max_len=32"),
])
def test_transformer_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(Transformer(9, 9, 16, 4, 1, 1, 32, max_len=32))


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="num_layers must be an int >= 1"):
        Decoder(0, 16, 4, 32)
    with pytest.raises(ValueError, match="divisible"):
        DecoderLayer(10, 3, 32)
    with pytest.raises(ValueError, match=r"\(batch, tgt\)"):
        target_mask(torch.tensor([1, 2, 0]), pad_id=0)
