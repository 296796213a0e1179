"""Oracle tests of course_lib.bert against transformers' BERT (same weights, same inputs).

Tolerances: 1e-4 max abs difference in fp32 for hidden states (the two compute the same
sums in a different order), 1e-5 for gradients of the small random model.
"""
import random

import pytest
import torch
import transformers

from course_lib import bert as B
from course_lib.data import assets

ATOL = 1e-4


def small_config(**overrides):
    values = dict(vocab_size=101, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=80, max_position_embeddings=40, type_vocab_size=2)
    return transformers.BertConfig(**{**values, **overrides})


def batch(vocab=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 13), generator=g)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 8:] = 0
    attention_mask[2, 11:] = 0
    ids = ids.masked_fill(attention_mask == 0, 0)
    token_types = torch.zeros_like(ids)
    token_types[:, 6:] = 1
    return ids, attention_mask, token_types


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    hf = transformers.BertModel(small_config()).eval()
    ours = B.Bert(B.BertConfig.from_hf(hf.config)).eval()
    assert ours.load_hf_state_dict(hf.state_dict()) == []
    return hf, ours


def test_hidden_states_and_pooler_equal_transformers(pair):
    hf, ours = pair
    ids, mask, types = batch()
    expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
    got = ours(ids, mask, types)
    assert got.hidden_states.shape == (3, 13, 48) and got.pooled.shape == (3, 48)
    assert (got.hidden_states - expected.last_hidden_state).abs().max() <= ATOL
    assert (got.pooled - expected.pooler_output).abs().max() <= ATOL
    # without a mask or segments both default the same way
    assert (ours(ids).hidden_states - hf(input_ids=ids).last_hidden_state).abs().max() <= ATOL


def test_fused_attention_gives_the_same_states(pair):
    hf, ours = pair
    fast = B.Bert(ours.config, fast=True).eval()
    fast.load_state_dict(ours.state_dict())
    ids, mask, types = batch(seed=1)
    assert (fast(ids, mask, types).hidden_states - ours(ids, mask, types).hidden_states).abs().max() <= ATOL


def test_gradients_equal_transformers(pair):
    hf, ours = pair
    ids, mask, types = batch(seed=2)
    weights = torch.randn(3, 13, 48, generator=torch.Generator().manual_seed(3))
    for model, out in ((hf, lambda: hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state),
                       (ours, lambda: ours(ids, mask, types).hidden_states)):
        model.zero_grad()
        (out() * weights).sum().backward()
    pairs = [(hf.embeddings.word_embeddings.weight, ours.embeddings.word_embeddings.weight),
             (hf.embeddings.position_embeddings.weight, ours.embeddings.position.embedding.weight),
             (hf.encoder.layer[0].attention.self.query.weight, ours.encoder.layers[0].self_attn.w_q.weight),
             (hf.encoder.layer[2].intermediate.dense.weight, ours.encoder.layers[2].ff.linear1.weight),
             (hf.encoder.layer[1].output.LayerNorm.weight, ours.encoder.layers[1].norm2.weight)]
    for theirs, mine in pairs:
        assert torch.allclose(mine.grad, theirs.grad, atol=1e-5, rtol=1e-4)


def test_dropout_sites_match_bert(pair):
    _, ours = pair
    layer = ours.encoder.layers[0]
    assert isinstance(layer.ff.dropout, torch.nn.Identity), "BERT has no dropout inside the feed-forward block"
    assert layer.self_attn.dropout == 0.1 and layer.dropout1.p == 0.1 and ours.embeddings.dropout.p == 0.1
    assert layer.norm1.eps == 1e-12 and layer.ff.activation == "gelu" and not layer.norm_first


def test_real_pretrained_weights_equal_transformers():
    root = assets.locate("minilm")
    if root is None:
        pytest.skip("the offline BERT (asset minilm) is not fetched: run `make assets`")
    folder = root / assets.get("minilm").folder
    hf = transformers.BertModel.from_pretrained(folder).eval()
    ours = B.Bert.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(["The cat chased the mouse until it got tired.", "Fine food, fast delivery!"],
                    ["It fell asleep.", "Five stars."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**enc)
        got = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert (got.hidden_states - expected.last_hidden_state).abs().max() <= ATOL
    assert (got.pooled - expected.pooler_output).abs().max() <= ATOL


def test_classifier_equals_transformers_and_loads_a_bare_encoder():
    torch.manual_seed(1)
    hf = transformers.BertForSequenceClassification(small_config(num_labels=3)).eval()
    ours = B.BertForClassification(B.BertConfig.from_hf(hf.config), num_labels=3).eval()
    assert ours.load_hf_state_dict(hf.state_dict()) == []
    ids, mask, types = batch(seed=4)
    expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert (ours(ids, mask, types) - expected).abs().max() <= ATOL
    # a BertModel checkpoint (no classifier yet) loads only with strict_head=False
    bare = transformers.BertModel(small_config()).state_dict()
    with pytest.raises(ValueError, match="lacks"):
        ours.load_hf_state_dict(bare)
    ours.load_hf_state_dict(bare, strict_head=False)
    assert torch.equal(ours.head.dense.weight, bare["pooler.dense.weight"])


def test_masked_lm_equals_transformers_and_loss_skips_unmasked():
    torch.manual_seed(2)
    hf = transformers.BertForMaskedLM(small_config()).eval()
    ours = B.BertForMaskedLM(B.BertConfig.from_hf(hf.config)).eval()
    ours.load_hf_state_dict(hf.state_dict())
    assert ours.head.word_embeddings.weight is ours.bert.embeddings.word_embeddings.weight  # tied
    ids, mask, types = batch(seed=5)
    inputs, labels = B.mask_tokens(ids, ids == 0, mask_token_id=4, vocab_size=101, mlm_probability=0.3,
                                   generator=torch.Generator().manual_seed(0))
    expected = hf(input_ids=inputs, attention_mask=mask, token_type_ids=types, labels=labels)
    logits = ours(inputs, mask, types)
    assert (logits - expected.logits).abs().max() <= ATOL
    assert abs(B.mlm_loss(logits, labels).item() - expected.loss.item()) <= ATOL


def test_parameter_counts_equal_transformers_for_base_and_large():
    large = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    for hf_config in (transformers.BertConfig(), transformers.BertConfig(**large), small_config()):
        with torch.device("meta"):
            expected = sum(p.numel() for p in transformers.BertModel(hf_config).parameters())
            ours = sum(p.numel() for p in B.Bert(B.BertConfig.from_hf(hf_config)).parameters())
        assert B.parameter_counts(B.BertConfig.from_hf(hf_config))["total"] == expected == ours
    assert B.BertConfig.from_hf(transformers.BertConfig()) == B.BertConfig()  # the defaults are BERT-base


def test_loading_errors_name_the_problem(pair):
    hf, _ = pair
    state = hf.state_dict()
    model = B.Bert(B.BertConfig.from_hf(hf.config))
    with pytest.raises(ValueError, match="lacks"):
        model.load_hf_state_dict({k: v for k, v in state.items() if "layer.2." not in k})
    with pytest.raises(ValueError, match="shape"):
        B.Bert(B.BertConfig.from_hf(small_config(intermediate_size=64))).load_hf_state_dict(state)
    with pytest.raises(ValueError, match="gelu"):
        B.BertConfig.from_hf(small_config(hidden_act="relu"))
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match="hidden_states"):
        B.ClassificationHead(48, 2)(torch.zeros(2, 48))


def test_tf_era_gamma_beta_names_load(pair):
    hf, ours = pair
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in hf.state_dict().items()}
    model = B.Bert(ours.config).eval()
    model.load_hf_state_dict({"bert." + k: v for k, v in renamed.items()})
    ids, mask, types = batch()
    assert torch.equal(model(ids, mask, types).hidden_states, ours(ids, mask, types).hidden_states)


# --- masked language modelling and next-sentence prediction --------------------------------

def mlm_batch():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(10, 1000, (256, 64), generator=g)
    lengths = torch.randint(8, 65, (256,), generator=g)
    padding = torch.arange(64) >= lengths[:, None]
    ids[:, 0] = 1                                              # [CLS]
    ids[torch.arange(256), lengths - 1] = 2                    # [SEP]
    ids = ids.masked_fill(padding, 0)                          # [PAD]
    return ids, B.special_tokens_mask(ids, [0, 1, 2])


def proportions(ids, special, inputs, labels, mask_id=3):
    chosen = labels != B.IGNORE_INDEX
    return (chosen.sum() / (~special).sum(), (inputs[chosen] == mask_id).float().mean(),
            ((inputs != ids) & (inputs != mask_id))[chosen].float().mean(), (inputs == ids)[chosen].float().mean())


def test_mask_tokens_follows_the_80_10_10_rule():
    ids, special = mlm_batch()
    inputs, labels = B.mask_tokens(ids, special, mask_token_id=3, vocab_size=1000,
                                   generator=torch.Generator().manual_seed(0))
    chosen = labels != B.IGNORE_INDEX
    assert not (chosen & special).any(), "special tokens and padding are never chosen"
    assert torch.equal(labels[chosen], ids[chosen]) and (labels[~chosen] == -100).all()
    assert torch.equal(inputs[~chosen], ids[~chosen]), "tokens that were not chosen stay"
    rate, masked, randomized, kept = proportions(ids, special, inputs, labels)
    # about 9,000 eligible tokens: these bounds are 5 or more standard deviations wide
    assert 0.13 < rate < 0.17 and 0.76 < masked < 0.84 and 0.07 < randomized < 0.13 and 0.07 < kept < 0.13
    again = B.mask_tokens(ids, special, 3, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels), "the generator makes it repeatable"


def test_mask_tokens_agrees_with_transformers_collator():
    ids, special = mlm_batch()

    class Tokenizer:  # what DataCollatorForLanguageModeling asks of a tokenizer here
        mask_token, mask_token_id, pad_token, pad_token_id = "[MASK]", 3, "[PAD]", 0

        def __len__(self):
            return 1000

        def convert_tokens_to_ids(self, token):
            return {"[MASK]": 3, "[PAD]": 0}[token]

    torch.manual_seed(0)
    collator = transformers.DataCollatorForLanguageModeling(Tokenizer(), mlm_probability=0.15)
    theirs = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    ours = B.mask_tokens(ids, special, 3, 1000, generator=torch.Generator().manual_seed(1))
    for a, b in zip(proportions(ids, special, *theirs), proportions(ids, special, *ours)):
        assert abs(a - b) < 0.04
    assert ((theirs[1] != -100) & special).sum() == 0


def test_mask_tokens_checks_its_mask():
    ids, special = mlm_batch()
    with pytest.raises(ValueError, match="special_mask"):
        B.mask_tokens(ids, special.int(), 3, 1000)


def test_nsp_pairs():
    documents = [[f"d{d}s{s}" for s in range(random.Random(d).randint(1, 12))] for d in range(60)]
    pairs = B.make_nsp_pairs(documents, random.Random(0))
    where = {s: (d, i) for d, doc in enumerate(documents) for i, s in enumerate(doc)}
    assert [p.sentence_a for p in pairs] == [s for doc in documents for s in doc[:-1]]
    for a, b, is_next in pairs:
        (da, ia), (db, ib) = where[a], where[b]
        assert (da == db and ib == ia + 1) if is_next else da != db
    share = sum(p.is_next for p in pairs) / len(pairs)
    assert 0.42 < share < 0.58, share
    assert B.make_nsp_pairs(documents, random.Random(0)) == pairs
    with pytest.raises(ValueError, match="2 documents"):
        B.make_nsp_pairs([["a", "b"]], random.Random(0))


# --- the sentiment data of notebook 07 (course_lib.data.reviews) ----------------------------

def test_fine_food_reviews_as_documented():
    from course_lib.data import reviews
    if assets.locate("modeldata") is None:
        pytest.skip("the offline reviews (asset modeldata) are not fetched: run `make assets`")
    data = reviews.load_sentiment(online=False)
    assert data.label_names == ("other", "great")
    # counts as the modeldata documentation gives them: training 2,600 great / 1,400 other, testing 658 / 342
    assert (len(data.train), sum(data.train.labels)) == (4000, 2600)
    assert (len(data.test), sum(data.test.labels)) == (1000, 658)
    assert not any("<br" in t for t in data.train.texts) and all(t == t.strip() for t in data.test.texts)
    # Amazon shows one review under several variants of a product: 7 test reviews are also in training
    assert len(set(data.train.texts) & set(data.test.texts)) == 7
    sample = data.train.sample(100, seed=3)
    assert len(sample) == 100 and sample == data.train.sample(100, seed=3) and sample != data.train.sample(100, seed=4)
    assert all(data.train.labels[data.train.texts.index(text)] == label
               for text, label in zip(sample.texts[:10], sample.labels[:10]))
    assert data.train.sample(10_000) is data.train


def test_clean_removes_markup_and_runs_of_spaces():
    from course_lib.data.reviews import clean
    assert clean(" Great!<br /><br />Buy it.  <BR>Now ") == "Great! Buy it. Now"
