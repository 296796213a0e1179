"""course_lib.gpt against independent implementations (the oracles).

- The whole model against transformers' GPT2LMHeadModel on a small random GPT2Config with the
  weights loaded by GPT.from_gpt2 (minGPT's test, offline): logits and the gradients of the
  loss with respect to the shared weights, float64, atol 1e-10 (a float64 rounding difference
  is about 1e-15, a wrong formula above 1e-3), with GPT-2's own tanh-GELU and the exact one;
  and the real ``gpt2`` weights where the hub answers (float32, 1e-4).
- The KV cache: logits of incremental decoding equal full recomputation (float64, 1e-10), and
  greedy tokens generated with the cache equal those without it and those of transformers'
  ``generate`` on the same weights.
- The exact and fused attention paths agree; the training helpers do what they say.
"""

import pytest
import torch
import torch.nn.functional as F

from course_lib.data import assets
from course_lib.gpt import GPT, CausalSelfAttention, GPTConfig
from course_lib.sampling import generate
from course_lib.training import lm_loss

transformers = pytest.importorskip("transformers")
ATOL = 1e-10


def hf_gpt2(activation="gelu", seed=0, **overrides):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=50, n_positions=24, n_embd=32, n_layer=3, n_head=4,
                                     activation_function=activation, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, **overrides)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    with torch.no_grad():  # GPT-2 initializes LayerNorms to (1, 0); randomize so that a swapped norm shows
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def tokens(batch=2, seq=11, vocab=50, seed=1):
    return torch.randint(vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
@pytest.mark.parametrize("fast", [False, True])
def test_logits_equal_gpt2(fast, activation):
    hf = hf_gpt2(activation)
    ours = GPT.from_gpt2(hf, fast=fast).double().eval()
    idx = tokens()
    expected = hf(idx).logits
    logits, present = ours(idx)
    assert torch.allclose(logits, expected, atol=ATOL, rtol=0)
    assert len(present) == 3 and present[0][0].shape == (2, 4, 11, 8)


def test_gradients_equal_gpt2():
    hf = hf_gpt2()
    ours = GPT.from_gpt2(hf, fast=False).double()
    idx, targets = tokens(seed=2), tokens(seed=3)
    F.cross_entropy(hf(idx).logits.flatten(0, 1), targets.flatten()).backward()
    lm_loss(ours(idx)[0], targets).backward()
    h1, h2 = hf.transformer.h[1], hf.transformer.h[2]
    pairs = {"tok (tied)": (ours.tok.weight.grad, hf.transformer.wte.weight.grad),
             "pos": (ours.pos.embedding.weight.grad, hf.transformer.wpe.weight.grad),
             "w_q": (ours.blocks[1].attn.w_q.weight.grad, h1.attn.c_attn.weight.grad[:, :32].t()),
             "w_v bias": (ours.blocks[1].attn.w_v.bias.grad, h1.attn.c_attn.bias.grad[64:]),
             "w_o": (ours.blocks[1].attn.w_o.weight.grad, h1.attn.c_proj.weight.grad.t()),
             "linear2 bias": (ours.blocks[2].ff.linear2.bias.grad, h2.mlp.c_proj.bias.grad),
             "norm1": (ours.blocks[0].norm1.weight.grad, hf.transformer.h[0].ln_1.weight.grad),
             "norm": (ours.norm.weight.grad, hf.transformer.ln_f.weight.grad)}
    for name, (mine, theirs) in pairs.items():
        assert torch.allclose(mine, theirs, atol=ATOL, rtol=0), name


def test_gelu_approximation_matters():
    """The tanh GELU is not the exact one, by far more than the tolerance of the tests above:
    loading GPT-2 weights must take the config's."""
    hf = hf_gpt2(activation="gelu_new")
    ours = GPT.from_gpt2(hf).double().eval()
    for block in ours.blocks:
        block.ff.activation = "gelu"
    diff = (ours(tokens())[0] - hf(tokens()).logits).abs().max().item()
    assert diff > 100 * ATOL


def test_unknown_gpt2_activation_is_refused():
    with pytest.raises(ValueError, match="activation_function must be one of"):
        GPT.from_gpt2(hf_gpt2(activation="relu"))


@pytest.mark.skipif(not assets.online_available("smollm2"), reason="the hub is unreachable: the real gpt2 weights "
                    "are online only (their offline stand-in, SmolLM2, is not a GPT-2)")
def test_logits_equal_real_gpt2():
    hf = transformers.GPT2LMHeadModel.from_pretrained("gpt2").eval()
    ours = GPT.from_gpt2(hf).eval()
    idx = torch.randint(50257, (2, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(ours(idx)[0], hf(idx).logits, atol=1e-4, rtol=0)


def test_weights_are_tied_and_counted_once():
    model = GPT(GPTConfig(vocab_size=85, max_len=64, num_layers=4, num_heads=4, d_model=128))
    assert model.lm_head.weight is model.tok.weight
    d, layers = 128, 4
    per_block = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    expected = 85 * d + 64 * d + layers * per_block + 2 * d
    assert model.num_parameters() == expected
    assert model.num_parameters(embeddings=False) == expected - 64 * d


@pytest.mark.parametrize("fast", [False, True])
def test_kv_cache_equals_full_recomputation(fast):
    model = GPT.from_gpt2(hf_gpt2(), fast=fast).double().eval()
    idx = tokens(seq=14)
    full, _ = model(idx)
    # prefill 5 positions, then 1, then 3 at once, then one at a time
    logits, past = model(idx[:, :5])
    pieces = [logits]
    for a, b in [(5, 6), (6, 9)] + [(t, t + 1) for t in range(9, 14)]:
        logits, past = model(idx[:, a:b], past)
        pieces.append(logits)
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=ATOL, rtol=0)
    assert past[0][0].shape[2] == 14


def test_cache_longer_than_max_len_is_refused():
    model = GPT.from_gpt2(hf_gpt2()).eval()
    _, past = model(tokens(seq=20))
    with pytest.raises(ValueError, match="max_len"):
        model(tokens(seq=5), past)


def test_attention_paths_agree_under_dropout_free_training():
    torch.manual_seed(0)
    exact = CausalSelfAttention(16, 4, fast=False).double()
    fused = CausalSelfAttention(16, 4, fast=True).double()
    fused.load_state_dict(exact.state_dict())
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    assert torch.allclose(exact(x)[0], fused(x)[0], atol=ATOL)
    with pytest.raises(ValueError, match=r"\(batch, T, d_model=16\)"):
        exact(torch.randn(7, 16))


@pytest.mark.parametrize("use_cache", [False, True])
def test_greedy_generation_equals_transformers_generate(use_cache):
    hf = hf_gpt2()
    hf.generation_config.pad_token_id = 0
    model = GPT.from_gpt2(hf).double().eval()
    prompt = tokens(batch=2, seq=4, seed=5)
    expected = hf.generate(prompt, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(prompt))
    assert torch.equal(generate(model, prompt, 12, temperature=0.0, use_cache=use_cache), expected)


def test_generation_past_the_context_slides_the_window():
    model = GPT.from_gpt2(hf_gpt2()).double().eval()
    prompt = tokens(batch=1, seq=20, seed=6)
    cached = generate(model, prompt, 10, temperature=0.0, use_cache=True)
    recomputed = generate(model, prompt, 10, temperature=0.0, use_cache=False)
    assert cached.shape == (1, 30) and torch.equal(cached, recomputed)
    # the last token is the greedy choice given the last max_len tokens before it
    logits, _ = model(cached[:, -25:-1])
    assert cached[0, -1] == logits[0, -1].argmax()
