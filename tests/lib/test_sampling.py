"""course_lib.sampling's filters against transformers' logits warpers (the oracles).

The same logits go through course_lib's filters and through TemperatureLogitsWarper,
TopKLogitsWarper and TopPLogitsWarper; the results must be equal: the same tokens removed
(-inf) and the kept logits equal to 1e-6 (float32). Sampling draws with torch.multinomial, so
with the same seed course_lib's sampled generation gives the same tokens as transformers'
``generate(do_sample=True)`` on a GPT-2 with the same weights.
"""
import pytest
import torch

from course_lib.gpt import GPT
from course_lib.sampling import apply_temperature, generate, sample_next, top_k_filter, top_p_filter

transformers = pytest.importorskip("transformers")
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper  # noqa: E402


def logits(batch=4, vocab=50, seed=0, scale=3.0):
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def same(a, b):
    return torch.equal(torch.isinf(a), torch.isinf(b)) and torch.allclose(
        a.masked_fill(torch.isinf(a), 0), b.masked_fill(torch.isinf(b), 0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_equals_transformers(t):
    x = logits()
    assert same(apply_temperature(x, t), TemperatureLogitsWarper(t)(None, x.clone()))


@pytest.mark.parametrize("k", [1, 5, 49, 50, 80])
def test_top_k_equals_transformers(k):
    x = logits(seed=1)
    out = top_k_filter(x, k)
    assert same(out, TopKLogitsWarper(k)(None, x.clone()))
    assert (torch.isfinite(out).sum(-1) == min(k, 50)).all()


def test_top_k_keeps_ties():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    assert same(top_k_filter(x, 1), TopKLogitsWarper(1)(None, x.clone()))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_equals_transformers(p, scale):
    x = logits(batch=6, seed=2, scale=scale)
    assert same(top_p_filter(x, p), TopPLogitsWarper(p)(None, x.clone()))


def test_top_p_keeps_the_token_that_crosses_p():
    x = torch.tensor([[0.5, 0.3, 0.2]]).log()
    kept = torch.isfinite(top_p_filter(x, 0.6))
    assert kept.tolist() == [[True, True, False]]
    assert torch.isfinite(top_p_filter(x, 0.01)).tolist() == [[True, False, False]]


def test_filters_in_order_equal_the_warper_chain():
    x = logits(seed=3)
    chain = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(10)(None, TemperatureLogitsWarper(0.7)(None, x.clone())))
    ours = top_p_filter(top_k_filter(apply_temperature(x, 0.7), 10), 0.8)
    assert same(ours, chain)


def test_filters_refuse_bad_arguments():
    for call in (lambda: apply_temperature(logits(), 0.0), lambda: top_k_filter(logits(), 0),
                 lambda: top_p_filter(logits(), 0.0), lambda: top_p_filter(logits(), 1.5)):
        with pytest.raises(ValueError):
            call()


def test_sample_next_draws_from_the_filtered_distribution():
    x = logits(batch=1, seed=4).expand(20000, -1)
    draws = sample_next(x, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))
    expected = top_k_filter(x[0] / 0.8, 5).softmax(-1)
    freq = torch.bincount(draws, minlength=50).double() / len(draws)
    assert set(draws.unique().tolist()) <= set(expected.nonzero().flatten().tolist())
    assert (freq - expected).abs().max() < 0.015  # 20000 draws: standard error at most 0.0036
    assert torch.equal(sample_next(x[:3], temperature=0), x[:3].argmax(-1))


def test_sampled_generation_equals_transformers_generate():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     activation_function="gelu", bos_token_id=0, eos_token_id=None,
                                     pad_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).double().eval()
    with torch.no_grad():  # peaked enough that every filter changes the draws (checked: top_k 19,
        hf.transformer.wte.weight.mul_(3)  # top_p 0.8, temperature 1.0 or no top_k all give other tokens)
    model = GPT.from_gpt2(hf).double().eval()
    prompt = torch.randint(50, (2, 3), generator=torch.Generator().manual_seed(1))
    kwargs = dict(temperature=0.9, top_k=20, top_p=0.9)
    torch.manual_seed(7)
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=15, do_sample=True, **kwargs)
    torch.manual_seed(7)
    assert torch.equal(generate(model, prompt, 15, **kwargs), expected)
