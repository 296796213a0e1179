"""course_lib.decoding against independent implementations.

Oracles:
- greedy_decode (batched, padded sources, encode/decode) against a loop over single
  unpadded sentences that calls the model's full forward() on the growing prefix;
- beam_search with beam_size=1 against greedy_decode;
- beam_search with a beam wide enough to keep every prefix against brute force: the score
  log P / length^alpha of every possible output, from forward(), float64, rel 1e-9.
"""
import itertools

import pytest
import torch

from course_lib.batching import pad_sequences
from course_lib.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from course_lib.decoder import Transformer
from course_lib.decoding import beam_search, greedy_decode, translate


def random_model(seed, vocab=12, tgt_vocab=None):
    torch.manual_seed(seed)
    model = Transformer(vocab, tgt_vocab or vocab, d_model=16, num_heads=2, num_encoder_layers=2,
                        num_decoder_layers=2, d_ff=32, dropout=0.3, max_len=64)
    with torch.no_grad():  # sharper distributions than at initialisation, so decoding choices matter
        model.generator.bias.normal_(0, 2.0, generator=torch.Generator().manual_seed(seed))
    return model.double().eval()


def sources(seed, n=5, vocab=12):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g).tolist() + [EOS_ID]
            for _ in range(n)]


def greedy_by_forward(model, src, max_len, eos_id):
    """One sentence, no padding: extend the prefix with the argmax of forward()'s last position."""
    src = torch.tensor([src])
    out = [BOS_ID]
    for _ in range(max_len):
        tgt = torch.tensor([out])
        mask = torch.ones(len(out), len(out), dtype=torch.bool).tril().unsqueeze(0)
        out.append(int(model(src, tgt, None, mask)[0, -1].argmax()))
        if out[-1] == eos_id:
            break
    return out


def pick_eos(model, src, max_len):
    """An id the model produces partway for some sentences, to act as <eos>: rows then stop at different times."""
    never = greedy_decode(model, src, max_len, eos_id=-1)
    return int(never[0, 3])


@pytest.mark.parametrize("seed", range(4))
def test_greedy_matches_sentence_by_sentence_forward(seed):
    model = random_model(seed)
    srcs = sources(seed)
    src = pad_sequences(srcs)
    eos = pick_eos(model, src, 10)
    out = greedy_decode(model, src, max_len=10, eos_id=eos)
    assert out.dtype == torch.long and out.shape[0] == len(srcs) and out.shape[1] <= 11
    stopped = 0
    for row, s in zip(out.tolist(), srcs):
        expected = greedy_by_forward(model, s, 10, eos)
        assert row[:len(expected)] == expected
        assert all(t == PAD_ID for t in row[len(expected):]), "after <eos> only padding"
        stopped += expected[-1] == eos
    assert stopped >= 1


def test_greedy_respects_the_source_padding_mask():
    model = random_model(5)
    src = pad_sequences(sources(5))
    out = greedy_decode(model, src, max_len=6)
    padded_more = torch.cat([src, torch.full((src.shape[0], 4), PAD_ID)], dim=1)
    assert torch.equal(greedy_decode(model, padded_more, max_len=6), out)


@pytest.mark.parametrize("seed", range(4))
def test_beam_size_one_is_greedy(seed):
    model = random_model(10 + seed)
    src = pad_sequences(sources(seed, n=6))
    eos = pick_eos(model, src, 12)
    greedy = greedy_decode(model, src, max_len=12, eos_id=eos)
    beam = beam_search(model, src, max_len=12, beam_size=1, eos_id=eos, alpha=0.7)
    width = max(greedy.shape[1], beam.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID)  # noqa: E731
    assert torch.equal(pad(greedy), pad(beam))


def sequence_log_prob(model, src, tokens):
    """log P(tokens[1:] | src) from forward(), for one sentence."""
    src, tgt = torch.tensor([src]), torch.tensor([tokens[:-1]])
    mask = torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool).tril().unsqueeze(0)
    log_probs = model(src, tgt, None, mask)[0].log_softmax(-1)
    return sum(log_probs[t, tok].item() for t, tok in enumerate(tokens[1:]))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_wide_beam_finds_the_best_normalized_score(alpha):
    vocab, max_len = 6, 3  # 5 tokens other than <eos>: at most 25 prefixes of length 2, all kept
    model = random_model(3, vocab=vocab)
    with torch.no_grad():
        model.generator.bias[EOS_ID] += 1.5  # make finishing early a real option
    src = [4, 5, 4, EOS_ID]
    others = [t for t in range(vocab) if t != EOS_ID]
    candidates = []
    for n in range(max_len):  # n tokens, then <eos>
        candidates += [[BOS_ID, *body, EOS_ID] for body in itertools.product(others, repeat=n)]
    candidates += [[BOS_ID, *body] for body in itertools.product(others, repeat=max_len)]  # never finished
    scores = [sequence_log_prob(model, src, c) / (len(c) - 1) ** alpha for c in candidates]
    best = candidates[max(range(len(candidates)), key=scores.__getitem__)]
    found = beam_search(model, torch.tensor([src]), max_len=max_len, beam_size=125, alpha=alpha)[0].tolist()
    assert found[:len(best)] == best and all(t == PAD_ID for t in found[len(best):])


def test_beam_search_output_layout():
    model = random_model(7)
    src = pad_sequences(sources(7, n=3))
    eos = pick_eos(model, src, 8)
    out = beam_search(model, src, max_len=8, beam_size=3, eos_id=eos)
    assert out.shape[0] == 3 and (out[:, 0] == BOS_ID).all() and out.shape[1] <= 9
    for row in out.tolist():
        if eos in row:
            assert all(t == PAD_ID for t in row[row.index(eos) + 1:])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_decodes_each_text_as_it_would_alone(beam_size):
    tok = CharTokenizer("abcdefgh")
    model = random_model(7, vocab=tok.vocab_size)
    texts = ["abc", "hgfedcba", "d", "bead", "cafe"]
    alone = []
    for text in texts:
        src = torch.tensor([tok.encode(text) + [EOS_ID]])
        max_len = int(1.5 * src.shape[1]) + 10
        ids = greedy_decode(model, src, max_len) if beam_size == 1 else beam_search(model, src, max_len, beam_size)
        alone.append(tok.decode(ids[0].tolist()))
    same_length = [t for t in texts if len(t) == 4]  # alone, a batch's padding changes max_len, not the result
    assert translate(model, tok, same_length, beam_size=beam_size) == [alone[texts.index(t)] for t in same_length]
    assert translate(model, tok, texts, beam_size=beam_size, batch_size=1) == alone
