"""Checks of notebook 08_gpt: next-token probabilities, the top-p filter, attention with a KV cache."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .. import sampling
from ..attention import scaled_dot_product_attention
from ..gpt import CausalSelfAttention
from ..multihead import merge_heads, split_heads
from .engine import CheckFailed, check_close, exercise, not_distributions, on_error


def _logits(batch: int = 3, vocab: int = 12, seed: int = 8, scale: float = 2.0) -> Tensor:
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def _keep(logits: Tensor, keep: Tensor) -> Tensor:
    return logits.masked_fill(~keep, float("-inf"))


@exercise(forbid={"course_lib.sampling.top_k_filter": sampling.top_k_filter,
                  "course_lib.sampling.apply_temperature": sampling.apply_temperature})
def check_next_token_probs(next_token_probs: Callable[..., Tensor]) -> None:
    """Notebook 08: ``next_token_probs(logits, temperature, top_k)`` returns the probabilities
    softmax(top_k_filter(logits / temperature)) over the last axis, (batch, vocab); ``top_k=None``
    keeps every token."""
    top_k_filter = sampling.top_k_filter
    logits = _logits()
    t, k = 0.7, 4
    expected = top_k_filter(logits / t, k).softmax(-1)
    kth_smallest = logits.topk(k, dim=-1, largest=False).values[..., -1:]
    check_close(next_token_probs(logits.clone(), t, k), expected, f"next_token_probs(logits, {t}, top_k={k})", {
        "the temperature multiplies the logits; divide them by it (t < 1 sharpens)":
            top_k_filter(logits * t, k).softmax(-1),
        "the temperature is missing: divide the logits by it before the softmax": top_k_filter(logits, k).softmax(-1),
        "return probabilities (softmax of the filtered logits), not the logits": top_k_filter(logits / t, k),
        "you kept the k smallest logits; top-k keeps the k largest":
            _keep(logits / t, logits <= kth_smallest).softmax(-1),
        f"you kept {k + 1} tokens; keep exactly the top {k}": top_k_filter(logits / t, k + 1).softmax(-1),
        f"you kept {k - 1} tokens, the k-th largest logit removed too: remove only the logits < the k-th "
        "largest (not <=)": top_k_filter(logits / t, k - 1).softmax(-1),
        "probabilities zeroed after the softmax do not sum to 1: put -inf on the removed logits "
        "before the softmax": (logits / t).softmax(-1) * torch.isfinite(top_k_filter(logits, k)),
        "top-k is missing: only the k most probable tokens may keep probability": (logits / t).softmax(-1),
        "the temperature is applied after the softmax; divide the logits by it, then take the softmax":
            top_k_filter(logits, k).softmax(-1) / t,
    }, broken={
        "the tokens outside the top k still get probability: give their logits -inf (not 0 or a finite "
        "number) before the softmax, so that exp makes them 0": lambda p: bool((p[expected == 0] != 0).any()),
        "each row must be a probability distribution over the vocabulary (>= 0, sums to 1)": not_distributions,
    })
    tied = torch.tensor([[2.0, 5.0, 5.0, 1.0], [3.0, 1.0, 3.0, 3.0]])
    check_close(next_token_probs(tied.clone(), 1.0, 1), top_k_filter(tied, 1).softmax(-1),
                "next_token_probs(logits, 1.0, top_k=1) where the largest logit is tied", {
        "tokens tied with the k-th largest logit must stay: keep every logit >= the k-th largest "
        "(mask logits < kth with -inf), rather than exactly k indices from topk":
            torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),
    })
    check_close(next_token_probs(logits.clone(), 1.0, None), logits.softmax(-1),
                "next_token_probs(logits, 1.0, top_k=None)", {
        "with top_k=None every token stays: filter only when top_k is given": top_k_filter(logits, k).softmax(-1),
    })


@exercise(forbid={"course_lib.sampling.top_p_filter": sampling.top_p_filter})
def check_top_p_filter(top_p_filter: Callable[[Tensor, float], Tensor]) -> None:
    """Notebook 08: ``top_p_filter(logits, p)`` keeps the most probable tokens until their
    probabilities add up to p (the token that crosses p included), -inf elsewhere, in the
    original token order."""
    reference = sampling.top_p_filter
    logits, p = _logits(seed=9), 0.75
    expected = reference(logits, p)
    probs = logits.softmax(-1)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(-1)
    cumulative = sorted_probs.cumsum(-1)

    def unsort(remove_sorted: Tensor) -> Tensor:
        return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))

    ascending_logits, ascending = logits.sort(dim=-1)
    remove_ascending = ascending_logits.softmax(-1).cumsum(-1) - ascending_logits.softmax(-1) >= p
    check_close(top_p_filter(logits.clone(), p), expected, f"top_p_filter(logits, {p})", {
        "the token whose probability takes the total past p was dropped; keep it (remove a token "
        "only when the tokens ranked above it already reach p)": unsort(cumulative > p),
        "the nucleus is made of the most probable tokens: sort with descending=True":
            logits.masked_fill(remove_ascending.scatter(-1, ascending, remove_ascending), float("-inf")),
        "the result is in sorted order: put the mask back in the original token order (scatter with "
        "the sort's indices)": sorted_logits.masked_fill(cumulative - sorted_probs >= p, float("-inf")),
        "return logits with -inf for the removed tokens, not probabilities":
            probs.masked_fill(torch.isinf(expected), 0.0),
        "removed tokens need -inf, not 0: exp(0) = 1 still gives them probability":
            logits.masked_fill(torch.isinf(expected), 0.0),
        "the probabilities must come from a softmax over each row (the last axis), not over the batch":
            unsort(sorted_logits.softmax(0).cumsum(-1) - sorted_logits.softmax(0) >= p),
        "the running total must add up probabilities (softmax of the sorted logits), not the logits":
            unsort(sorted_logits.cumsum(-1) - sorted_logits >= p),
    })
    top1 = reference(logits, 1e-4)
    check_close(top_p_filter(logits.clone(), 1e-4), top1, "top_p_filter(logits, 0.0001)", {
        "the most probable token must always stay, however small p is": torch.full_like(logits, float("-inf")),
    })


@exercise(forbid={"course_lib.gpt.CausalSelfAttention.forward (attn(x, past))": CausalSelfAttention.forward})
def check_attend_with_cache(attend_with_cache: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> None:
    """Notebook 08: ``attend_with_cache(attn, x, past_k, past_v)`` -> (out, k, v) for one new
    position: its query attends to the cached keys and its own; k and v are the cache extended."""
    torch.manual_seed(10)
    attn = CausalSelfAttention(16, 4).eval()
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        full, (k_all, v_all) = attn(x)
    for p in (5, 0):  # P cached positions; 0: the first token, with an empty cache
        n, where = p + 1, f" with {p} cached positions"
        with torch.no_grad():
            q = split_heads(attn.w_q(x[:, p:n]), 4)
            past_k, past_v = k_all[:, :, :p], v_all[:, :, :p]
            with on_error("the cache is (batch, heads, P, d_head): concatenate the new key and value on the "
                          "sequence axis, torch.cat([past_k, k_new], dim=2)"):
                result = attend_with_cache(attn, x[:, p:n].clone(), past_k.clone(), past_v.clone())
            if not (isinstance(result, tuple) and len(result) == 3):
                raise CheckFailed("attend_with_cache should return a tuple (out, k, v)"
                                  + (" (did you forget to `return` it?)" if result is None else ""))
            out, k, v = result
            alone = attn(x[:, p:n])[0]
            top_left = scaled_dot_product_attention(q, k_all[:, :, :n], v_all[:, :, :n],
                                                    torch.ones(1, n, dtype=torch.bool).tril())[0]
            no_w_o = merge_heads(scaled_dot_product_attention(q, k_all[:, :, :n], v_all[:, :, :n])[0])
        check_close(k, k_all[:, :, :n], f"the returned keys k{where}", {
            "the new key goes after the cached ones: torch.cat([past_k, k_new], dim=2)":
                torch.cat([k_all[:, :, p:n], past_k], dim=2),
            "return the whole cache, the past keys and the new one (batch, heads, P + 1, d_head)": k_all[:, :, p:n],
        })
        check_close(v, v_all[:, :, :n], f"the returned values v{where}", {
            "the new value goes after the cached ones: torch.cat([past_v, v_new], dim=2)":
                torch.cat([v_all[:, :, p:n], past_v], dim=2),
            "v holds values (attn.w_v), not keys": k_all[:, :, :n],
        })
        mistakes = {"the output projection W^O (attn.w_o) is missing": no_w_o}
        if p:  # with an empty cache these equal the right output
            mistakes |= {
                "the new token attended only to itself: attend over the cached keys and values and its own":
                    alone,
                "a causal mask here hides the cache: is_causal=True (or tril) with 1 query and P + 1 keys lets "
                "the query see only the first key; the newest token may see every key, so use no mask":
                    attn.w_o(merge_heads(top_left)),
            }
        check_close(out, full[:, p:n], f"the output out{where}", mistakes)
