"""attention_maps against a recomputation: softmax(Q K^T / sqrt(d_head)) from each layer's own
input and projection weights, stepped through the model by hand."""
import math

import pytest
import torch

from course_lib.attention import causal_mask, padding_mask
from course_lib.attention_maps import attention_maps, head_patterns, layer_head_grid
from course_lib.decoder import Transformer
from course_lib.encoder import Encoder
from course_lib.gpt import GPT, GPTConfig
from course_lib.multihead import MultiHeadAttention

TOL = dict(atol=1e-5, rtol=0)


def recompute(mha: MultiHeadAttention, query, key, mask=None):
    """The weights by the formula, each head's projection cut out of the layer's weight matrices."""
    d_head = mha.d_model // mha.num_heads
    heads = []
    for h in range(mha.num_heads):
        rows = slice(h * d_head, (h + 1) * d_head)
        q = query @ mha.w_q.weight[rows].T + mha.w_q.bias[rows]
        k = key @ mha.w_k.weight[rows].T + mha.w_k.bias[rows]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        heads.append(scores.softmax(-1).nan_to_num(0.0))
    return torch.stack(heads, dim=1)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_encoder_maps_equal_the_recomputation(norm_first, fast):
    torch.manual_seed(0)
    encoder = Encoder(3, d_model=16, num_heads=4, d_ff=32, dropout=0.3, norm_first=norm_first, fast=fast).train()
    tokens = torch.tensor([[5, 3, 7, 2, 9], [4, 8, 1, 0, 0]])
    x, mask = torch.randn(2, 5, 16), padding_mask(tokens, 0)
    maps = attention_maps(encoder, x, mask)
    assert list(maps) == [f"layers.{i}.self_attn" for i in range(3)]
    encoder.eval()
    with torch.no_grad():
        h = x
        for i, layer in enumerate(encoder.layers):
            inp = layer.norm1(h) if norm_first else h
            torch.testing.assert_close(maps[f"layers.{i}.self_attn"], recompute(layer.self_attn, inp, inp, mask), **TOL)
            h = layer(h, mask)
    assert maps["layers.0.self_attn"][1, :, :, 3:].abs().max() == 0, "padded keys get weight"
    # the model is left as it was found
    assert all(layer.self_attn.fast == fast for layer in encoder.layers)


def test_transformer_maps_cover_every_layer_and_kind():
    torch.manual_seed(1)
    model = Transformer(11, 13, d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=3,
                        d_ff=32, dropout=0.1, fast=True).train()
    src, tgt = torch.tensor([[3, 4, 5, 6, 0]]), torch.tensor([[1, 7, 8, 9]])
    src_mask, tgt_mask = padding_mask(src, 0), causal_mask(4).unsqueeze(0)
    maps = attention_maps(model, src, tgt, src_mask, tgt_mask)
    assert model.training
    assert layer_head_grid(maps, "encoder", "self_attn").shape == (2, 2, 5, 5)
    assert layer_head_grid(maps, "decoder", "self_attn").shape == (3, 2, 4, 4)
    cross = layer_head_grid(maps, "decoder", "cross_attn")
    assert cross.shape == (3, 2, 4, 5)
    model.eval()
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        y = model.pos(model.tgt_embed(tgt))
        for i, layer in enumerate(model.decoder.layers):
            torch.testing.assert_close(maps[f"decoder.layers.{i}.self_attn"][0],
                                       recompute(layer.self_attn, y, y, tgt_mask)[0], **TOL)
            h = layer.norm1(y + layer.self_attn(y, mask=tgt_mask)[0])  # post-LN: cross-attention's query
            torch.testing.assert_close(cross[i], recompute(layer.cross_attn, h, memory, src_mask)[0], **TOL)
            y = layer(y, memory, tgt_mask, src_mask)
    assert torch.all(cross[..., 4] == 0), "the padded source position gets weight"


@pytest.mark.parametrize("fast", [False, True])
def test_gpt_maps_with_and_without_the_cache(fast):
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=20, max_len=16, d_model=16, num_heads=4, num_layers=2, fast=fast))
    idx = torch.randint(20, (2, 6))
    maps = attention_maps(model, idx)
    grid = layer_head_grid(maps, "blocks", "attn", example=1)
    assert grid.shape == (2, 4, 6, 6)
    with torch.no_grad():
        x = model.tok(idx) + model.pos.embedding(torch.arange(6))
        block = model.blocks[0]
        h = block.norm1(x)
        torch.testing.assert_close(maps["blocks.0.attn"], recompute(block.attn, h, h, causal_mask(6)), **TOL)
        _, past = model(idx[:, :5])
    # one new token against the cache: the last row of the full map
    step = attention_maps(model, idx[:, 5:], past)
    for name, weights in step.items():
        assert weights.shape == (2, 4, 1, 6)
        torch.testing.assert_close(weights, maps[name][:, :, 5:], **TOL)


def patterns_by_loops(grid, ids, real, targets):
    """Clark et al.'s measures with one loop per head, example and query, in float64."""
    layers, heads = grid.shape[:2]
    out = {name: torch.zeros(layers, heads, dtype=torch.float64) for name in ["previous", "next", "itself",
                                                                              *targets, "entropy"]}
    for layer in range(layers):
        for head in range(heads):
            sums = dict.fromkeys(out, 0.0)
            counts = dict.fromkeys(out, 0)
            for b in range(ids.shape[0]):
                n = int(real[b].sum())
                for q in range(n):
                    row = grid[layer, head, b, q].double()
                    for name, value in [("itself", row[q]), ("entropy", -sum(p * math.log(p) for p in row if p > 0)),
                                        *[(t, row[ids[b] == i].sum()) for t, i in targets.items()]]:
                        sums[name] += float(value)
                        counts[name] += 1
                    if q > 0:
                        sums["previous"] += float(row[q - 1])
                        counts["previous"] += 1
                    if q < n - 1:
                        sums["next"] += float(row[q + 1])
                        counts["next"] += 1
            for name in out:
                out[name][layer, head] = sums[name] / counts[name]
    return out


def test_head_patterns_equal_the_loops_over_heads_examples_and_queries():
    torch.manual_seed(0)
    encoder = Encoder(2, d_model=16, num_heads=4, d_ff=32)
    ids = torch.tensor([[1, 5, 3, 7, 2, 9, 2], [1, 4, 8, 2, 0, 0, 0]])  # 1 opens, 2 closes a segment, 0 pads
    real = ids != 0
    maps = attention_maps(encoder, torch.randn(2, 7, 16), padding_mask(ids, 0))
    measured = head_patterns(maps, "layers", "self_attn", ids, real.long(), {"[CLS]": 1, "[SEP]": 2})
    grid = torch.stack([maps[f"layers.{i}.self_attn"] for i in range(2)]).transpose(1, 2)
    expected = patterns_by_loops(grid, ids, real, {"[CLS]": 1, "[SEP]": 2})
    assert measured.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(measured[name].double(), expected[name], atol=1e-6, rtol=0, msg=name)


def test_head_patterns_of_ideal_heads():
    """A head that looks only at the previous token scores 1 there and entropy 0; a uniform one ln n."""
    n = 5
    previous = torch.zeros(1, 2, n, n)
    previous[0, 0, 0, 0] = 1.0
    previous[0, 0, torch.arange(1, n), torch.arange(n - 1)] = 1.0
    previous[0, 1] = 1.0 / n
    ids = torch.arange(n).unsqueeze(0)
    out = head_patterns({"attn": previous}, "", "attn", ids, torch.ones(1, n), {"first": 0})
    assert out["previous"][0].tolist() == pytest.approx([1.0, 1.0 / n])
    assert out["entropy"][0].tolist() == pytest.approx([0.0, math.log(n)], abs=1e-6)
    assert out["first"][0].tolist() == pytest.approx([2.0 / n, 1.0 / n])  # queries 0 and 1 look at token 0
    with pytest.raises(ValueError, match="attention of token_ids"):
        head_patterns({"attn": previous}, "", "attn", torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3), {})


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        attention_maps(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        attention_maps(lambda x: x, 1)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="must name maps"):
        layer_head_grid(attention_maps(mha, torch.zeros(1, 3, 8)), "encoder", "self_attn")

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(self.attn(x)[0])

    with pytest.raises(RuntimeError, match="ran twice"):
        attention_maps(Twice(), torch.zeros(1, 3, 8))
