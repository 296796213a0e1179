"""course_lib.recurrent against its oracles: torch's GRUCell and GRU, and the additive attention
written out in float64 loops."""
import pytest
import torch
from torch import nn

from course_lib.attention import padding_mask
from course_lib.batching import make_batch
from course_lib.data.tokenizers import PAD_ID
from course_lib.decoding import greedy_decode
from course_lib.recurrent import AdditiveAttention, Seq2Seq, additive_scores, gru_cell


def test_gru_cell_equals_torch_gru_cell():
    torch.manual_seed(0)
    cell = nn.GRUCell(5, 7).double()
    x, h = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)
    ours = gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    torch.testing.assert_close(ours, cell(x, h), rtol=0, atol=1e-12)


def test_additive_scores_equal_the_formula_written_out():
    g = torch.Generator().manual_seed(1)
    query, keys = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 4, 5, generator=g,
                                                                                  dtype=torch.float64)
    w_q, w_k, v = (torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g,
                   dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64))
    expected = torch.tensor([[sum(v[a] * torch.tanh(sum(w_q[a, i] * query[b, i] for i in range(3))
                                                    + sum(w_k[a, i] * keys[b, j, i] for i in range(5)))
                                  for a in range(6)) for j in range(4)] for b in range(2)], dtype=torch.float64)
    torch.testing.assert_close(additive_scores(query, keys, w_q, w_k, v), expected, rtol=0, atol=1e-12)


def test_additive_attention_averages_the_unmasked_keys():
    torch.manual_seed(2)
    attention = AdditiveAttention(3, 5, 4).double()
    query, keys = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    context, weights = attention(query, keys, mask)
    scores = additive_scores(query, keys, attention.w_q.weight, attention.w_k.weight, attention.v)
    for b in range(2):
        kept = scores[b, mask[b]]
        expected = kept.exp() / kept.exp().sum()
        torch.testing.assert_close(weights[b, mask[b]], expected, rtol=0, atol=1e-12)
        assert (weights[b, ~mask[b]] == 0).all()
        torch.testing.assert_close(context[b], sum(w * k for w, k in zip(weights[b], keys[b])), rtol=0, atol=1e-12)


@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attention"])
def test_encoding_a_padded_row_equals_encoding_it_alone(attention):
    torch.manual_seed(3)
    model = Seq2Seq(12, d_emb=6, d_hidden=8, attention=attention).double().eval()
    batch = make_batch([[5, 6, 7, 8, 9], [10, 11]], [[5], [6]])
    states = model.encode(batch.src, batch.src_mask)
    alone = model.encoder(model.embed(batch.src[1:, :3]))[0]  # [10, 11, <eos>] without padding
    torch.testing.assert_close(states[1, :3], alone[0], rtol=0, atol=1e-12)
    assert (states[1, 3:] == 0).all()
    logits = model(batch.src, batch.tgt_in, batch.src_mask)
    torch.testing.assert_close(logits[1:], model(batch.src[1:, :3], batch.tgt_in[1:]), rtol=0, atol=1e-12)


def test_the_plain_decoder_sees_the_source_only_through_its_last_state():
    torch.manual_seed(4)
    model = Seq2Seq(12, d_emb=6, d_hidden=8, attention=False).double().eval()
    src, tgt = torch.tensor([[5, 6, 7, 2]]), torch.tensor([[1, 8, 9]])
    memory = model.encode(src)
    changed = memory.clone()
    changed[:, :-1] = torch.randn_like(changed[:, :-1])  # every state but the last
    torch.testing.assert_close(model.decode(tgt, changed), model.decode(tgt, memory), rtol=0, atol=0)


@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attention"])
def test_decoding_is_causal_and_greedy_decode_runs_it(attention):
    torch.manual_seed(5)
    model = Seq2Seq(12, d_emb=6, d_hidden=8, attention=attention).double().eval()
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, PAD_ID]])
    memory = model.encode(src, padding_mask(src, PAD_ID))
    tgt = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    later = tgt.clone()
    later[:, 2:] = 11
    weights: list[torch.Tensor] = []
    out = model.decode(tgt, memory, padding_mask(src, PAD_ID), weights=weights)
    torch.testing.assert_close(model.decode(later, memory, padding_mask(src, PAD_ID))[:, :2], out[:, :2])
    assert len(weights) == (4 if attention else 0)
    assert all(w[1, 3] == 0 for w in weights)  # the padded source position gets no weight
    decoded = greedy_decode(model, src, max_len=6)
    assert decoded.shape[0] == 2 and (decoded[:, 0] == 1).all()


def test_encode_refuses_a_row_of_padding_only():
    model = Seq2Seq(12, attention=False)
    with pytest.raises(ValueError, match="at least one real token"):
        model.encode(torch.tensor([[PAD_ID, PAD_ID]]))
