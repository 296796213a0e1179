"""Student-facing checks used by the notebooks' visible tests.

Each check runs the student's code on small random inputs, compares the result with
course_lib's reference and, when they differ, tries the common wrong versions so that
the message can name the likely mistake instead of printing two tensors.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .attention import causal_mask, padding_mask, scaled_dot_product_attention
from .decoder import DecoderLayer
from .encoder import EncoderLayer
from .multihead import merge_heads, split_heads
from .positional import sinusoidal_encoding

_NEG_INF_BELOW = -1e8  # a student's -1e9 or finfo.min counts as -inf


class CheckFailed(AssertionError):
    """A visible check failed; the message says what was expected and the likely mistake."""


def _normalized(t: Tensor) -> Tensor:
    t = t.detach().to(torch.float64)
    return t.masked_fill(t < _NEG_INF_BELOW, float("-inf"))


def _close(a: Tensor, b: Tensor, atol: float) -> bool:
    return a.shape == b.shape and torch.allclose(_normalized(a), _normalized(b), atol=atol, rtol=1e-4)


def check_close(actual, expected: Tensor, what: str, mistakes: dict[str, Tensor] | None = None,
                atol: float = 1e-5) -> None:
    """Raise CheckFailed unless ``actual`` is a tensor equal to ``expected``.

    ``mistakes`` maps a message to the value that the mistake it names would produce.
    """
    if not isinstance(actual, Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(actual).__name__}"
                          + (" (did you forget to `return` it?)" if actual is None else ""))
    for message, wrong in (mistakes or {}).items():
        if _close(actual, wrong, atol) and not _close(actual, expected, atol):
            raise CheckFailed(f"{what} is not right: {message}")
    if actual.shape != expected.shape:
        raise CheckFailed(f"{what} should have shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        raise CheckFailed(f"{what} contains NaN: a row where everything is masked out? "
                          "softmax of all -inf is NaN")
    if not _close(actual, expected, atol):
        diff = (_normalized(actual) - _normalized(expected)).abs().nan_to_num(0.0).max().item()
        raise CheckFailed(f"{what} has the right shape but wrong values (largest difference {diff:.3g})")


def _qkv(batch: int = 2, seq_q: int = 3, seq_k: int = 5, d_k: int = 4, d_v: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, seq_q, d_k, generator=g), torch.randn(batch, seq_k, d_k, generator=g),
            torch.randn(batch, seq_k, d_v, generator=g))


def _mask(batch: int = 2, seq_q: int = 3, seq_k: int = 5, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, seq_q, seq_k, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    return mask


def check_attention_scores(attention_scores: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``attention_scores(q, k)`` must return q @ k^T, shape (batch, seq_q, seq_k)."""
    q, k, _ = _qkv()
    expected = q @ k.transpose(-2, -1)
    check_close(attention_scores(q, k), expected, "attention_scores(q, k)", {
        "you computed k @ q^T; the scores are (seq_q, seq_k): q @ k.transpose(-2, -1)":
            k @ q.transpose(-2, -1),
        "don't scale here; the 1/sqrt(d_k) belongs to the next step": expected / math.sqrt(q.shape[-1]),
        "don't apply softmax here; this step returns the raw scores": expected.softmax(-1),
    })


def check_scaled_softmax(scaled_softmax: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 01: ``scaled_softmax(scores, d_k)`` must return softmax(scores / sqrt(d_k)) over the keys."""
    q, k, _ = _qkv()
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    check_close(scaled_softmax(scores, d_k), (scores / math.sqrt(d_k)).softmax(-1),
                "scaled_softmax(scores, d_k)", {
        "softmax over the wrong axis: each query's weights over the keys must sum to 1 (dim=-1)":
            (scores / math.sqrt(d_k)).softmax(-2),
        "missing the 1/sqrt(d_k) scaling before the softmax": scores.softmax(-1),
        "divided by d_k instead of sqrt(d_k)": (scores / d_k).softmax(-1),
        "scaled after the softmax; divide the scores by sqrt(d_k) first": scores.softmax(-1) / math.sqrt(d_k),
        "the softmax is missing": scores / math.sqrt(d_k),
    })


def check_apply_mask(apply_mask: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Notebook 01: ``apply_mask(scores, mask)`` puts -inf where ``mask`` is False."""
    q, k, _ = _qkv()
    scores, mask = q @ k.transpose(-2, -1), _mask()
    out = apply_mask(scores.clone(), mask.clone())
    check_close(out, scores.masked_fill(~mask, float("-inf")), "apply_mask(scores, mask)", {
        "the mask has the wrong polarity: True means 'may attend', so fill where mask is False (~mask)":
            scores.masked_fill(mask, float("-inf")),
        "masked scores must become -inf, not 0: exp(0) = 1 still gives the key weight":
            scores.masked_fill(~mask, 0.0),
        "the softmax belongs to the next step; return the masked scores": scores.masked_fill(~mask, float("-inf")).softmax(-1),
    })


def check_attention(attention: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Notebook 01: ``attention(q, k, v, mask=None)`` returns (output, weights)."""
    q, k, v = _qkv()
    mask = _mask()
    d_k = q.shape[-1]
    for m in (None, mask):
        result = attention(q, k, v, mask=m)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckFailed("attention(q, k, v, mask) should return a tuple (output, weights)")
        out, weights = result
        exp_out, exp_w = scaled_dot_product_attention(q, k, v, m)
        where = "" if m is None else " with a mask"
        fill = (lambda s: s) if m is None else (lambda s: s.masked_fill(~m, float("-inf")))
        inverted = None if m is None else scaled_dot_product_attention(q, k, v, ~m)[1]
        wrong_w = {
            "missing the 1/sqrt(d_k) scaling": fill(q @ k.transpose(-2, -1)).softmax(-1),
            "softmax over the wrong axis (use dim=-1, over the keys)":
                fill(q @ k.transpose(-2, -1) / math.sqrt(d_k)).softmax(-2).nan_to_num(0.0),
        }
        if inverted is not None:
            wrong_w["the mask has the wrong polarity: True means 'may attend'"] = inverted
        check_close(weights, exp_w, f"the weights{where}", wrong_w)
        check_close(out, exp_out, f"the output{where}", {
            "the output should be weights @ v, not weights @ k": exp_w @ k if k.shape == v.shape else exp_w,
        })


def check_split_heads(split: Callable[[Tensor, int], Tensor]) -> None:
    """Notebook 02: ``split_heads(x, num_heads)``: (batch, seq, d_model) -> (batch, heads, seq, d_head)."""
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(2))
    check_close(split(x.clone(), 4), split_heads(x, 4), "split_heads(x, num_heads=4)", {
        "heads taken in the wrong order: reshape to (batch, seq, heads, d_head) first, then "
        "transpose(1, 2); reshaping straight to (batch, heads, seq, d_head) mixes tokens":
            x.reshape(2, 4, 3, 2),
        "forgot the transpose: the result must be (batch, heads, seq, d_head)": x.view(2, 3, 4, 2),
        "each head must take a contiguous block of d_head features: reshape to "
        "(batch, seq, heads, d_head), not (batch, seq, d_head, heads)": x.view(2, 3, 2, 4).permute(0, 3, 1, 2),
    })


def check_merge_heads(merge: Callable[[Tensor], Tensor]) -> None:
    """Notebook 02: ``merge_heads(x)``: (batch, heads, seq, d_head) -> (batch, seq, heads * d_head)."""
    x = torch.randn(2, 4, 3, 2, generator=torch.Generator().manual_seed(3))
    check_close(merge(x.clone()), merge_heads(x), "merge_heads(x)", {
        "heads merged in the wrong order: transpose(1, 2) back to (batch, seq, heads, d_head) "
        "before reshaping to (batch, seq, d_model)": x.reshape(2, 3, 8),
        "the heads are interleaved: head h must come back as the contiguous features "
        "h * d_head .. (h + 1) * d_head - 1; transpose(1, 2), then reshape": x.permute(0, 2, 3, 1).reshape(2, 3, 8),
        "after the transpose, reshape (batch, seq, heads, d_head) to (batch, seq, heads * d_head)":
            x.transpose(1, 2),
    })


def _copy_to_torch(mha: nn.Module, d_model: int, num_heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.w_q.weight, mha.w_k.weight, mha.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.w_q.bias, mha.w_k.bias, mha.w_v.bias]))
        ref.out_proj.weight.copy_(mha.w_o.weight)
        ref.out_proj.bias.copy_(mha.w_o.bias)
    return ref.eval()


def check_multihead(mha_class: type[nn.Module]) -> None:
    """Notebook 02: the student's module equals ``torch.nn.MultiheadAttention`` with the same weights.

    ``mha_class(d_model, num_heads)`` must have Linear layers ``w_q, w_k, w_v, w_o`` and
    ``forward(query, key, value, mask=None) -> (output, weights)``.
    """
    # batch == num_heads on purpose: a mask that is not unsqueezed over the heads then
    # broadcasts silently (batch b's mask lands on head b) and the check can name it.
    d_model, num_heads = 8, 2
    torch.manual_seed(4)
    mha = mha_class(d_model, num_heads).eval()
    ref = _copy_to_torch(mha, d_model, num_heads)
    g = torch.Generator().manual_seed(5)
    x, mem = torch.randn(2, 3, d_model, generator=g), torch.randn(2, 5, d_model, generator=g)
    mask = _mask(2, 3, 5)
    with torch.no_grad():
        for name, (q, kv, m) in {"self-attention": (x, x, None),
                                 "cross-attention with a mask": (x, mem, mask)}.items():
            result = mha(q, kv, kv, mask=m)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise CheckFailed("forward should return a tuple (output, weights)")
            expected, expected_w = ref(q, kv, kv, need_weights=True, average_attn_weights=False,
                                       attn_mask=None if m is None else ~m.repeat_interleave(num_heads, 0))

            def per_head(w_k: nn.Module, w_v: nn.Module, head_mask: Tensor | None) -> tuple[Tensor, Tensor]:
                return scaled_dot_product_attention(
                    split_heads(mha.w_q(q), num_heads), split_heads(w_k(kv), num_heads),
                    split_heads(w_v(kv), num_heads), head_mask)

            heads = per_head(mha.w_k, mha.w_v, None if m is None else m.unsqueeze(1))[0]
            wrong_w = {
                "the weights are averaged over the heads; return them per head, "
                "(batch, heads, seq_q, seq_k)": expected_w.mean(1),
                "keys and values use each other's projection: keys go through self.w_k, "
                "values through self.w_v": per_head(mha.w_v, mha.w_k, None if m is None else m.unsqueeze(1))[1],
            }
            if m is not None:
                wrong_w["the mask is not broadcast over the heads: make the (batch, seq_q, seq_k) mask "
                        "(batch, 1, seq_q, seq_k) with mask.unsqueeze(1)"] = per_head(mha.w_k, mha.w_v, m)[1]
            check_close(result[1], expected_w, f"the weights ({name})", wrong_w)
            check_close(result[0], expected, f"the output ({name})", {
                "the output projection W^O (self.w_o) is missing": merge_heads(heads),
                "heads merged in the wrong order before W^O": mha.w_o(heads.reshape(2, q.shape[1], d_model)),
            })


# --- notebook 03_positional_encoding ---------------------------------------------------

def _sinusoid_variant(max_len: int, d_model: int, exponent: Callable[[Tensor], Tensor] | None = None,
                      angle: Callable[[Tensor, Tensor], Tensor] | None = None, first: int = 0,
                      even: Callable[[Tensor], Tensor] = torch.sin, odd: Callable[[Tensor], Tensor] = torch.cos,
                      interleaved: bool = True) -> Tensor:
    """A sinusoidal table, correct by default; each argument reproduces one way of getting it wrong.

    ``exponent`` maps the column index j to the exponent of 10000 (right: (j - j % 2) / d_model),
    ``angle`` maps (positions, exponents) to the angles (right: pos / 10000^exponent).
    """
    pos = torch.arange(first, first + max_len, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(d_model, dtype=torch.float64)
    e = (j - j % 2) / d_model if exponent is None else exponent(j)
    a = pos / 10000.0 ** e if angle is None else angle(pos, e)
    if interleaved:
        return torch.where(j % 2 == 0, even(a), odd(a))
    half = a[:, 0::2]
    return torch.cat([even(half), odd(half)], dim=1)


def check_sinusoidal_encoding(encoding: Callable[[int, int], Tensor]) -> None:
    """Notebook 03: ``sinusoidal_encoding(max_len, d_model)`` returns the (max_len, d_model) table
    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)), PE(pos, 2i+1) = cos(same angle)."""
    max_len, d_model = 10, 8
    expected = sinusoidal_encoding(max_len, d_model, dtype=torch.float64)
    actual = encoding(max_len, d_model)
    if isinstance(actual, Tensor) and not actual.is_floating_point():
        raise CheckFailed(f"sinusoidal_encoding should return floats, got dtype {actual.dtype}: "
                          "create the table with torch.zeros(max_len, d_model) (float32 by default)")
    check_close(actual, expected, f"sinusoidal_encoding({max_len}, {d_model})", {
        "sin and cos are swapped: even columns 2i hold the sine, odd columns 2i+1 the cosine":
            _sinusoid_variant(max_len, d_model, even=torch.cos, odd=torch.sin),
        "the exponent uses i instead of 2i: pair i (columns 2i and 2i+1) divides by "
        "10000^(2i / d_model); with torch.arange(0, d_model, 2) the 2i is already there":
            _sinusoid_variant(max_len, d_model, exponent=lambda j: (j // 2) / d_model),
        "the cosine column 2i+1 must use the same frequency as its sine column 2i: "
        "the exponent is 2i / d_model for both, not (2i+1) / d_model":
            _sinusoid_variant(max_len, d_model, exponent=lambda j: j / d_model),
        "the exponent is doubled: torch.arange(0, d_model, 2) already gives 2i, don't multiply it by 2 again":
            _sinusoid_variant(max_len, d_model, exponent=lambda j: 2 * (j - j % 2) / d_model),
        "every pair has frequency 1 (angle = pos): is the base 10000 missing, or did 2i // d_model "
        "round the exponent to 0? Use 10000 ** (2i / d_model) with a true division":
            _sinusoid_variant(max_len, d_model, angle=lambda pos, e: pos.expand(-1, d_model)),
        "the base 10000 is missing: pos / e^(2i / d_model) instead of pos / 10000^(2i / d_model) "
        "(with the exp trick: exp(-2i * math.log(10000) / d_model))":
            _sinusoid_variant(max_len, d_model, angle=lambda pos, e: pos * torch.exp(-e)),
        "the position is multiplied by 10000^(2i / d_model); it should be divided by it":
            _sinusoid_variant(max_len, d_model, angle=lambda pos, e: pos * 10000.0 ** e),
        "positions start at 0: row 0 is (sin 0, cos 0, ...) = (0, 1, 0, 1, ...)":
            _sinusoid_variant(max_len, d_model, first=1),
        "sines and cosines must be interleaved (sin in column 2i, cos in column 2i+1), "
        "not concatenated as [all sines | all cosines]":
            _sinusoid_variant(max_len, d_model, interleaved=False),
        f"positions and dimensions are transposed: rows are positions, the shape is "
        f"(max_len, d_model) = ({max_len}, {d_model})": expected.T,
        "return the table (max_len, d_model) without a batch dimension": expected.unsqueeze(0),
    }, atol=1e-5)


def check_embed_with_positions(embed: Callable[[Tensor, nn.Embedding, Tensor], Tensor]) -> None:
    """Notebook 03: ``embed_with_positions(tokens, embedding, pe)`` returns
    embedding(tokens) * sqrt(d_model) + pe[:seq], shape (batch, seq, d_model)."""
    g = torch.Generator().manual_seed(6)
    vocab, d_model, batch, seq = 11, 8, 2, 5
    embedding = nn.Embedding(vocab, d_model)
    with torch.no_grad():
        embedding.weight.copy_(torch.randn(vocab, d_model, generator=g) * d_model ** -0.5)
    tokens = torch.randint(0, vocab, (batch, seq), generator=g)
    pe = sinusoidal_encoding(16, d_model)
    with torch.no_grad():
        tok = embedding(tokens)
        actual = embed(tokens.clone(), embedding, pe.clone())
    scale = math.sqrt(d_model)
    check_close(actual, tok * scale + pe[:seq], "embed_with_positions(tokens, embedding, pe)", {
        "the token embeddings are not scaled: multiply them by sqrt(d_model) before adding the positions":
            tok + pe[:seq],
        "scale only the token embeddings, then add the positions; you scaled the sum":
            (tok + pe[:seq]) * scale,
        "the positional encoding got the sqrt(d_model) factor; it belongs to the token embeddings":
            tok + pe[:seq] * scale,
        "divided by sqrt(d_model); the token embeddings are multiplied by it": tok / scale + pe[:seq],
        "multiplied by d_model instead of sqrt(d_model)": tok * d_model + pe[:seq],
        "the positional encoding is missing: add pe[:seq] (one row per position)": tok * scale,
    })


# --- notebook 04_encoder ---------------------------------------------------------------

def _layer_norm_variants(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> dict[str, Tensor]:
    """The values that common LayerNorm mistakes produce, by the message that names them."""
    def norm(dims, unbiased=False, eps_inside=True, sqrt=True, centre=True, w=weight, b=bias, e=eps):
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=unbiased, keepdim=True)
        std = (var + e).sqrt() if eps_inside else var.sqrt() + e
        return ((x - mean) if centre else x) / (std if sqrt else var + e) * w + b
    return {
        "normalized over the wrong axis: each position is normalized over its own d_model features, "
        "the last dimension (dim=-1, keepdim=True)": norm(-2),
        "normalized over the batch axis (that is BatchNorm); LayerNorm uses the last dimension, dim=-1":
            norm(0),
        "normalized over all of (seq, d_model); LayerNorm normalizes each position on its own, over dim=-1":
            norm((-2, -1)),
        "used the unbiased variance (dividing by d_model - 1); LayerNorm divides by d_model: "
        "x.var(dim=-1, unbiased=False, keepdim=True)": norm(-1, unbiased=True),
        "eps belongs inside the square root: (x - mean) / sqrt(var + eps)": norm(-1, eps_inside=False),
        "eps is ignored: use self.eps (this check passes eps=0.5)": norm(-1, e=1e-5),
        "divided by the variance; divide by the standard deviation sqrt(var + eps)": norm(-1, sqrt=False),
        "the mean is not subtracted: (x - mean) / sqrt(var + eps)": norm(-1, centre=False),
        "the gain self.weight and the bias self.bias are missing: ... * self.weight + self.bias":
            norm(-1, w=1.0, b=0.0),
        "the gain self.weight is missing: multiply the normalized x by it": norm(-1, w=1.0),
        "the bias self.bias is missing: add it after the gain": norm(-1, b=0.0),
    }


def check_layer_norm(layer_norm_class: type[nn.Module]) -> None:
    """Notebook 04: ``layer_norm_class(d_model, eps=1e-5)`` equals ``torch.nn.LayerNorm``, values and gradients.

    It must have parameters ``weight`` (ones) and ``bias`` (zeros) of shape (d_model,) and an ``eps``.
    """
    d_model = 6
    ln = layer_norm_class(d_model)
    for name, start in (("weight", torch.ones(d_model)), ("bias", torch.zeros(d_model))):
        p = getattr(ln, name, None)
        if not isinstance(p, nn.Parameter):
            raise CheckFailed(f"self.{name} should be an nn.Parameter of shape ({d_model},), got "
                              f"{type(p).__name__}: without nn.Parameter it is not learned")
        if p.shape != (d_model,) or not torch.equal(p.detach(), start):
            raise CheckFailed(f"self.{name} should start as torch.{'ones' if name == 'weight' else 'zeros'}"
                              f"(d_model), like nn.LayerNorm; got {p.detach()}")
    g = torch.Generator().manual_seed(9)
    weight, bias = torch.rand(d_model, generator=g) + 0.5, torch.rand(d_model, generator=g) - 0.5
    # Small features (std about 0.6), so that a misplaced or ignored eps changes the values.
    for eps, x in ((1e-5, torch.randn(3, 4, d_model, generator=g) * 3 + 1),
                   (0.5, torch.randn(3, 4, d_model, generator=g) * 0.6 + 1),
                   (0.5, torch.randn(5, d_model, generator=g) * 0.6)):
        ln = layer_norm_class(d_model) if eps == 1e-5 else layer_norm_class(d_model, eps=eps)
        ref = nn.LayerNorm(d_model, eps=eps)
        with torch.no_grad():
            for module in (ln, ref):
                module.weight.copy_(weight)
                module.bias.copy_(bias)
        x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, expected = ln(x_ours), ref(x_ref)
        check_close(out, expected.detach(), f"LayerNorm(d_model={d_model}, eps={eps}) of a "
                    f"{tuple(x.shape)} input", _layer_norm_variants(x, weight, bias, eps))
        upstream = torch.randn(x.shape, generator=g)
        (expected * upstream).sum().backward()
        if not out.requires_grad:
            raise CheckFailed("the output does not depend on the input in autograd: keep the computation "
                              "in torch (no .detach(), .item(), numpy or torch.no_grad())")
        (out * upstream).sum().backward()
        for what, a, b in (("the input", x_ours.grad, x_ref.grad), ("self.weight", ln.weight.grad, ref.weight.grad),
                           ("self.bias", ln.bias.grad, ref.bias.grad)):
            if a is None or not torch.allclose(a, b, atol=1e-5):
                raise CheckFailed(f"the values are right but the gradient with respect to {what} is not: "
                                  "keep the mean and variance in the graph (no .detach() or .item())")


def _encoder_variant(layer: nn.Module, x: Tensor, mask: Tensor | None, pre_ln: bool = False,
                     residual: str = "both", parallel: bool = False, ff_input: str = "h",
                     norms: str = "12", norm_outside: bool = False) -> Tensor:
    """A post-LN encoder layer's forward (eval mode) from ``layer``'s sub-modules, right or with one mistake.

    residual: which sub-layers keep their residual connection ("both", "attn", "ff", "none");
    ff_input "x" feeds the layer's input, not the first sub-layer's output, to the feed-forward network;
    norms "21" swaps norm1 and norm2; norm_outside gives x + norm(sublayer(x)).
    """
    n1, n2 = (layer.norm1, layer.norm2) if norms == "12" else (layer.norm2, layer.norm1)
    attn = lambda h: layer.self_attn(h, mask=mask)[0]
    if parallel:  # the course outline's one-line formula
        return n1(x + attn(x) + layer.ff(x))
    if pre_ln:
        h = x + attn(n1(x))
        return h + layer.ff(n2(h))

    def wrap(norm, inp, sub, keep):
        if norm_outside:
            return inp + norm(sub)
        return norm(inp + sub if keep else sub)
    h = wrap(n1, x, attn(x), residual in ("both", "attn"))
    return wrap(n2, h, layer.ff(h if ff_input == "h" else x), residual in ("both", "ff"))


def _layer_and_reference(layer_class, reference_class, sizes: tuple[int, int, int], norms: tuple[str, ...],
                         seed: int, modules: str):
    """The student's layer built with ``sizes`` (d_model, num_heads, d_ff) and no dropout, with
    gains and biases that differ per norm, so that a mixed-up norm shows; course_lib's layer with
    the same weights; and a generator for the inputs. A layer whose sub-modules differ fails,
    naming ``modules``."""
    d_model = sizes[0]
    torch.manual_seed(seed)
    layer = layer_class(*sizes, dropout=0.0).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in norms:
            getattr(layer, name).weight.copy_(torch.rand(d_model, generator=g) + 0.5)
            getattr(layer, name).bias.copy_(torch.rand(d_model, generator=g) - 0.5)
    reference = reference_class(*sizes, dropout=0.0).eval()
    try:
        reference.load_state_dict(layer.state_dict())
    except RuntimeError as error:
        raise CheckFailed("keep the given __init__: the layer needs exactly the sub-modules "
                          f"{modules} ({error})") from None
    return layer, reference, g

def check_encoder_layer(layer_class: type[nn.Module]) -> None:
    """Notebook 04: the student's post-LN encoder layer equals course_lib's ``EncoderLayer``.

    ``layer_class(d_model, num_heads, d_ff, dropout)`` has the sub-modules of
    ``course_lib.encoder.EncoderLayer`` and ``forward(x, mask=None) -> x``.
    """
    d_model, num_heads, d_ff = 8, 2, 16
    layer, reference, g = _layer_and_reference(layer_class, EncoderLayer, (d_model, num_heads, d_ff),
                                               ("norm1", "norm2"), seed=10,
                                               modules="self_attn, ff, norm1, norm2, dropout1, dropout2")

    x = torch.randn(2, 5, d_model, generator=g)
    mask = padding_mask(torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]]), 0)
    for m, what in ((None, "the encoder layer's output"), (mask, "the output with a padding mask")):
        with torch.no_grad():
            try:
                actual = layer(x.clone(), mask=m)
            except TypeError as error:
                hint = (" self.self_attn(...) returns a tuple (output, weights): take [0]"
                        if "tuple" in str(error) else "")
                raise CheckFailed(f"forward raised TypeError: {error}.{hint}") from None
            variant = lambda **kw: _encoder_variant(layer, x, m, **kw)
            mistakes = {} if m is None else {
                "the mask is not used: pass it on, self.self_attn(x, mask=mask)": _encoder_variant(layer, x, None)}
            check_close(actual, reference(x, mask=m), what, mistakes | {
                "LayerNorm is applied before each sub-layer (pre-LN); this layer is post-LN as in the "
                "paper: x = norm1(x + dropout1(self_attn(x)))": variant(pre_ln=True),
                "this is the outline's one-line form LayerNorm(x + SelfAttention(x) + FeedForward(x)); "
                "the sub-layers run one after the other: the feed-forward network takes the first "
                "sub-layer's output, each with its own residual and norm": variant(parallel=True),
                "the feed-forward network must take the output of the attention sub-layer, not the "
                "layer's input": variant(ff_input="x"),
                "the residual connection around the self-attention is missing: norm1(x + ...)":
                    variant(residual="ff"),
                "the residual connection around the feed-forward network is missing: norm2(x + ...)":
                    variant(residual="attn"),
                "both residual connections are missing: add each sub-layer's input back before its norm":
                    variant(residual="none"),
                "norm1 and norm2 are swapped: norm1 belongs to the self-attention, norm2 to the "
                "feed-forward network": variant(norms="21"),
                "the norm wraps the sum, x = norm(x + sublayer(x)), not x + norm(sublayer(x))":
                    variant(norm_outside=True),
            })

    # In training, dropout with p=1 zeroes each sub-layer's output: only the norms remain.
    layer = layer_class(d_model, num_heads, d_ff, dropout=1.0).train()
    with torch.no_grad():
        actual = layer(x.clone(), mask=mask)
        expected = layer.norm2(layer.norm1(x))
    if not (isinstance(actual, Tensor) and _close(actual, expected, 1e-5)):
        raise CheckFailed("dropout is in the wrong place (or missing): in training each sub-layer's output "
                          "goes through its dropout before the residual sum, "
                          "norm1(x + dropout1(self_attn(x)[0])) and norm2(x + dropout2(ff(x)))")


# --- notebook 05_decoder ---------------------------------------------------------------

def _decoder_variant(layer: nn.Module, x: Tensor, memory: Tensor, tgt_mask: Tensor | None,
                     memory_mask: Tensor | None, order: str = "scf", self_mask: str | None = "tgt",
                     cross_mask: str | None = "memory", cross_q: str = "x", cross_kv: str = "memory",
                     pre_ln: bool = False, residual: bool = True) -> Tensor:
    """A decoder layer's forward (eval mode) built from ``layer``'s sub-modules, right or with one mistake.

    order: the sub-layers in the order applied (s = self-attention, c = cross-attention,
    f = feed-forward); each keeps its own norm (s: norm1, c: norm2, f: norm3).
    """
    masks = {"tgt": tgt_mask, "memory": memory_mask, None: None}

    def sublayer(kind: str, h: Tensor) -> Tensor:
        if kind == "s":
            return layer.self_attn(h, mask=masks[self_mask])[0]
        if kind == "c":
            inputs = {"x": h, "memory": memory}
            kv = inputs[cross_kv]
            return layer.cross_attn(inputs[cross_q], kv, kv, mask=masks[cross_mask])[0]
        return layer.ff(h)

    norms = {"s": layer.norm1, "c": layer.norm2, "f": layer.norm3}
    for kind in order:
        norm = norms[kind]
        if pre_ln:
            x = x + sublayer(kind, norm(x))
        else:
            x = norm(x + sublayer(kind, x) if residual else sublayer(kind, x))
    return x


def check_decoder_layer(layer_class: type[nn.Module]) -> None:
    """Notebook 05: the student's post-LN decoder layer equals course_lib's ``DecoderLayer``.

    ``layer_class(d_model, num_heads, d_ff, dropout)`` has the sub-modules of
    ``course_lib.decoder.DecoderLayer`` and ``forward(x, memory, tgt_mask=None, memory_mask=None)``.
    """
    d_model, num_heads, d_ff = 8, 2, 16
    layer, reference, g = _layer_and_reference(layer_class, DecoderLayer, (d_model, num_heads, d_ff),
                                               ("norm1", "norm2", "norm3"), seed=6,
                                               modules="self_attn, cross_attn, ff, norm1, norm2, norm3")

    # Same length of target and source first, so that a mix-up of x and memory runs and can be named.
    x, memory = torch.randn(2, 4, d_model, generator=g), torch.randn(2, 4, d_model, generator=g)
    tgt_mask = causal_mask(4)
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, None)
        variant = lambda **kw: _decoder_variant(layer, x, memory, tgt_mask, None, **kw)
        check_close(actual, reference(x, memory, tgt_mask), "the decoder layer's output", {
            "the cross-attention takes its keys and values from the decoder's own states x; "
            "they must come from the encoder output: self.cross_attn(x, memory, memory, ...)":
                variant(cross_kv="x"),
            "the cross-attention's queries come from the decoder (x), its keys and values from memory; "
            "you swapped them": variant(cross_q="memory", cross_kv="x"),
            "the causal mask is missing: pass tgt_mask to the self-attention, or position t sees "
            "the target tokens after it": variant(self_mask=None),
            "the masks are swapped: tgt_mask (causal) belongs to the self-attention, memory_mask to "
            "the cross-attention": variant(self_mask="memory", cross_mask="tgt"),
            "the sub-layers are in the wrong order: masked self-attention first, then cross-attention, "
            "then the feed-forward network": variant(order="csf"),
            "the feed-forward network comes last, after the cross-attention": variant(order="sfc"),
            "LayerNorm is applied before each sub-layer (pre-LN); this layer is post-LN as in the "
            "paper: x = norm(x + dropout(sublayer(x)))": variant(pre_ln=True),
            "a residual connection is missing: each sub-layer's input is added back before the norm, "
            "norm(x + sublayer(x))": variant(residual=False),
        })

    # Then different lengths and padding on both sides.
    x, memory = torch.randn(2, 5, d_model, generator=g), torch.randn(2, 3, d_model, generator=g)
    tgt = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 0, 0]])
    tgt_mask = padding_mask(tgt, 0) & causal_mask(5)
    memory_mask = padding_mask(torch.tensor([[1, 2, 3], [1, 0, 0]]), 0)
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, memory_mask)
        variant = lambda **kw: _decoder_variant(layer, x, memory, tgt_mask, memory_mask, **kw)
        check_close(actual, reference(x, memory, tgt_mask, memory_mask),
                    "the output with padded target and source", {
            "memory_mask is not used: pass it to the cross-attention, so that padded source positions "
            "get no attention": variant(cross_mask=None),
            "tgt_mask is not passed to the self-attention": variant(self_mask=None),
        })

    # In training, dropout with p=1 zeroes every sub-layer's output: only the norms remain.
    layer = layer_class(d_model, num_heads, d_ff, dropout=1.0).train()
    with torch.no_grad():
        actual = layer(x.clone(), memory.clone(), tgt_mask, memory_mask)
        expected = layer.norm3(layer.norm2(layer.norm1(x)))
    if not (isinstance(actual, Tensor) and _close(actual, expected, 1e-5)):
        raise CheckFailed("in training mode each sub-layer's output must go through its dropout before "
                          "the residual sum: norm1(x + dropout1(self_attn(...))), then dropout2 for the "
                          "cross-attention and dropout3 for the feed-forward network")


def _running_sum(x: Tensor) -> Tensor:
    return x.cumsum(dim=1)


def _next_token_leak(x: Tensor) -> Tensor:
    """Output t = x[t] + x[t+1]: every position but the last reads the next one."""
    return x + torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


def _middle_leak(x: Tensor) -> Tensor:
    """Output 0 also reads x[2]; everything else is the identity."""
    out = x.clone()
    out[:, 0] = out[:, 0] + x[:, 2]
    return out


def check_is_causal(is_causal: Callable[..., bool]) -> None:
    """Notebook 05: ``is_causal(fn, x)`` says whether fn's output at each position t ignores x after t."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 5, 3, generator=g)
    widen = torch.randn(3, 7, generator=g)
    cases = [
        (_running_sum, True, "is_causal said False for a causal function (a running sum: output t = "
         "x[0] + ... + x[t]). Compare only the outputs at positions 0..t, and change only the inputs "
         "after t: output t may depend on x[t] itself"),
        (lambda x: _running_sum(x) @ widen, True, "is_causal said False for a causal function whose "
         "output has another width than its input (batch, seq, 7); compare outputs with outputs"),
        (_next_token_leak, False, "is_causal missed a leak from the next token (output t reads x[t+1]): "
         "compare the outputs at positions 0..t, t included, for every t up to seq - 2"),
        (_middle_leak, False, "is_causal missed a leak from position 2 into position 0: change every "
         "input after t, not only the last one"),
    ]
    for fn, expected, message in cases:
        before = x.clone()
        result = is_causal(fn, x)
        if not torch.equal(x, before):
            raise CheckFailed("is_causal changed its input x in place; change a copy (x.clone())")
        if isinstance(result, Tensor) and result.numel() == 1:
            result = bool(result)
        if not isinstance(result, bool):
            raise CheckFailed(f"is_causal should return True or False, got {type(result).__name__}"
                              + (" (did you forget to `return` it?)" if result is None else ""))
        if result != expected:
            raise CheckFailed(message)


# --- notebook 06_training --------------------------------------------------------------

def _smoothing_variants(logits: Tensor, target: Tensor, smoothing: float, pad_id: int) -> dict[str, Tensor]:
    """The loss as common mistakes compute it, keyed by the message that names each mistake."""
    vocab = logits.shape[-1]
    log_probs = logits.log_softmax(-1)
    keep = target != pad_id
    one_hot = nn.functional.one_hot(target, vocab).to(logits.dtype)
    right = -(((1 - smoothing) * one_hot + smoothing / vocab) * log_probs).sum(-1)
    others = -(((1 - smoothing) * one_hot + smoothing / (vocab - 1) * (1 - one_hot)) * log_probs).sum(-1)
    no_share = -(((1 - smoothing) * one_hot + smoothing / vocab * (1 - one_hot)) * log_probs).sum(-1)
    plain = -(one_hot * log_probs).sum(-1)
    return {
        "the padding positions are averaged in: take the mean over the non-pad tokens only": right.mean(),
        "the pad tokens are left out of the sum but still counted: divide by the number of non-pad tokens":
            right[keep].sum() / target.numel(),
        "this is the sum over tokens; return the mean over the non-pad tokens": right[keep].sum(),
        "no smoothing: the target must be (1 - smoothing) on the right token plus smoothing / V everywhere":
            plain[keep].mean(),
        "smoothing spread over the V - 1 other tokens; spread smoothing / V over all V entries, the right one too":
            others[keep].mean(),
        "the right token gets only 1 - smoothing; it also gets its share smoothing / V (q must sum to 1)":
            no_share[keep].mean(),
        "use log-probabilities (log_softmax of the logits), not the raw logits":
            -((((1 - smoothing) * one_hot + smoothing / vocab) * logits).sum(-1))[keep].mean(),
        "log_softmax over the wrong axis: normalise over the vocabulary (dim=-1)":
            -((((1 - smoothing) * one_hot + smoothing / vocab) * logits.log_softmax(0)).sum(-1))[keep].mean(),
    }


def check_label_smoothing_loss(label_smoothing_loss: Callable[..., Tensor]) -> None:
    """Notebook 06: ``label_smoothing_loss(logits, target, smoothing, pad_id)`` equals
    ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_id)``; logits (N, V), target (N,)."""
    g = torch.Generator().manual_seed(60)
    logits = 2 * torch.randn(10, 7, generator=g, dtype=torch.float64)
    target = torch.randint(1, 7, (10,), generator=g)
    target[[2, 5, 6]] = 0
    for smoothing in (0.1, 0.3):
        expected = nn.functional.cross_entropy(logits, target, label_smoothing=smoothing, ignore_index=0)
        check_close(label_smoothing_loss(logits.clone(), target.clone(), smoothing, 0), expected,
                    f"label_smoothing_loss with smoothing={smoothing}",
                    _smoothing_variants(logits, target, smoothing, 0), atol=1e-6)


def _rate_variants(step: int, d_model: int, warmup: int) -> dict[str, float]:
    s = max(step, 1)
    return {
        "max where the formula has min: the rate must grow during warm-up, then decay":
            d_model ** -0.5 * max(s ** -0.5, s * warmup ** -1.5),
        "the d_model^-0.5 factor is missing": min(s ** -0.5, s * warmup ** -1.5),
        "d_model should be raised to -0.5, not 0.5": d_model ** 0.5 * min(s ** -0.5, s * warmup ** -1.5),
        "warm-up should be warmup^-1.5 times step, not step^-1.5 times warmup":
            d_model ** -0.5 * min(s ** -0.5, warmup * s ** -1.5),
        "the decay is step^-0.5 (1 / sqrt(step)), not 1 / step": d_model ** -0.5 * min(1 / s, s * warmup ** -1.5),
    }


def check_rate(rate: Callable[[int, int, int], float]) -> None:
    """Notebook 06: ``rate(step, d_model, warmup)`` = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5),
    with step 0 read as step 1."""
    try:
        at_zero = rate(0, 512, 4000)
    except ZeroDivisionError:
        raise CheckFailed("rate(0, ...) divides by zero: read step 0 as step 1 (step = max(step, 1))") from None
    first_failure = None
    for step, d_model, warmup in ((0, 512, 4000), (1, 512, 4000), (100, 512, 4000), (4000, 512, 4000),
                                  (9000, 512, 4000), (30, 64, 50), (500, 64, 50)):
        expected = d_model ** -0.5 * min(max(step, 1) ** -0.5, max(step, 1) * warmup ** -1.5)
        got = at_zero if step == 0 else rate(step, d_model, warmup)
        what = f"rate(step={step}, d_model={d_model}, warmup={warmup})"
        if isinstance(got, Tensor):
            got = got.item()
        if not isinstance(got, (int, float)):
            raise CheckFailed(f"{what} should be a float, got {type(got).__name__}"
                              + (" (did you forget to `return` it?)" if got is None else ""))
        if math.isclose(got, expected, rel_tol=1e-6):
            continue
        # Name a mistake only where exactly one of them explains the value.
        named = [m for m, wrong in _rate_variants(step, d_model, warmup).items() if math.isclose(got, wrong, rel_tol=1e-6)]
        if len(named) == 1:
            raise CheckFailed(f"{what} is not right: {named[0]}")
        first_failure = first_failure or (what, got, expected, step)
    if first_failure:
        what, got, expected, step = first_failure
        if step == 0:
            raise CheckFailed(f"{what} = {got:.3g}: step 0 should give the same rate as step 1 ({expected:.3g})")
        raise CheckFailed(f"{what} = {got:.6g}, expected {expected:.6g}")


def _tiny_transformer(seed: int, vocab: int = 11) -> nn.Module:
    from .decoder import Transformer

    torch.manual_seed(seed)
    return Transformer(vocab, vocab, d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                       d_ff=32, dropout=0.0, max_len=32).double()


def _step_variant(model: nn.Module, batch, loss_fn, optimizer, scheduler, max_norm: float, zero_grad=True,
                  clip=True, shift=True) -> float:
    """One training step, or one of its common mistakes; returns the loss."""
    if zero_grad:
        optimizer.zero_grad()
    tgt = batch.tgt_in if shift else batch.tgt_out
    logits = model(batch.src, tgt, batch.src_mask, batch.tgt_mask)
    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    return loss.item()


def check_train_step(train_step: Callable[..., float]) -> None:
    """Notebook 06: ``train_step(model, batch, loss_fn, optimizer, scheduler, max_norm)`` does one
    update (model.train(), zero_grad, forward on batch.tgt_in, loss against batch.tgt_out, backward,
    clip to max_norm, optimizer.step(), scheduler.step()) and returns the loss as a float."""
    from .data.tokenizers import make_batch
    from .training import LabelSmoothingLoss, transformer_optimizer

    g = torch.Generator().manual_seed(61)
    seqs = [torch.randint(4, 11, (n,), generator=g).tolist() for n in (3, 5, 2, 4)]
    batch = make_batch(seqs, [s[::-1] for s in seqs])
    loss_fn = LabelSmoothingLoss(0.1, pad_id=0)  # takes (batch, tgt, V) or (N, V) logits

    def fresh():
        model = _tiny_transformer(62)
        optimizer, scheduler = transformer_optimizer(model, 16, warmup=3, factor=20.0)
        for p in model.parameters():  # stale gradients, as after an earlier step
            p.grad = torch.full_like(p, 0.5)
        return model, optimizer, scheduler

    model, optimizer, scheduler = fresh()
    model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(model, batch, loss_fn, optimizer, scheduler, 0.1)
    if isinstance(loss, Tensor):
        raise CheckFailed("train_step should return the loss as a Python float: `return loss.item()` "
                          "(a tensor would keep the whole graph alive)")
    if not isinstance(loss, float):
        raise CheckFailed(f"train_step should return the loss as a float, got {type(loss).__name__}"
                          + (" (did you forget to `return` it?)" if loss is None else ""))
    if not model.training:
        raise CheckFailed("the model is still in eval mode: call model.train() first, so that dropout is on")
    after = list(model.parameters())
    if all(torch.equal(a, b) for a, b in zip(before, after)):
        raise CheckFailed("no parameter changed: call optimizer.step() after loss.backward()")

    def params_of(**mistake) -> tuple[list[Tensor], float, float]:
        m, opt, sched = fresh()
        step_loss = _step_variant(m, batch, loss_fn, opt, sched, 0.1, **mistake)
        return [p.detach() for p in m.parameters()], opt.param_groups[0]["lr"], step_loss

    expected, expected_lr, expected_loss = params_of()
    same = lambda ps: all(torch.allclose(a, b, atol=1e-10, rtol=0) for a, b in zip(after, ps))  # noqa: E731
    if same(expected):
        if not math.isclose(optimizer.param_groups[0]["lr"], expected_lr, rel_tol=1e-9):
            raise CheckFailed("the learning rate did not move on: call scheduler.step() after optimizer.step()")
        if not math.isclose(loss, expected_loss, rel_tol=1e-6):
            raise CheckFailed(f"train_step returned {loss:.6g}, but the loss of this batch is {expected_loss:.6g}: "
                              "return loss.item() of the loss you called backward() on")
        return
    mistakes = {
        "the gradients of the previous step were not cleared: call optimizer.zero_grad() first":
            {"zero_grad": False},
        "the gradients were not clipped: nn.utils.clip_grad_norm_(model.parameters(), max_norm) "
        "between backward() and optimizer.step()": {"clip": False},
        "the decoder's input is batch.tgt_in (<bos> y1 ... yn); batch.tgt_out is what it must predict":
            {"shift": False},
    }
    for message, mistake in mistakes.items():
        if same(params_of(**mistake)[0]):
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if mistake == {"clip": False} and grads and torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])) <= 0.1 + 1e-9:
                message = "clip the gradients before optimizer.step(), not after: the step used unclipped ones"
            raise CheckFailed(f"train_step is not right: {message}")
    raise CheckFailed("the parameters after train_step differ from those after one correct update; check "
                      "the order: zero_grad, forward, loss, backward, clip, optimizer.step, scheduler.step")


def _greedy_variant(model: nn.Module, src: Tensor, max_len: int, bos_id: int, eos_id: int, pad_id: int,
                    causal: bool = True, last: bool = True, stop: bool = True, src_padding: bool = True) -> Tensor:
    """Greedy decoding, or one of its common mistakes."""
    src_mask = padding_mask(src, pad_id) if src_padding else None
    memory = model.encode(src, src_mask)
    out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        tgt_mask = causal_mask(out.shape[1]).unsqueeze(0) if causal else None
        hidden = model.decode(out, memory, src_mask, tgt_mask)
        token = model.generator(hidden[:, -1 if last else 0]).argmax(-1)
        if stop:
            token = token.masked_fill(done, pad_id)
        out = torch.cat([out, token.unsqueeze(1)], dim=1)
        done |= token == eos_id
        if stop and done.all():
            break
    return out


def check_greedy_decode(greedy_decode: Callable[..., Tensor]) -> None:
    """Notebook 06: ``greedy_decode(model, src, max_len, bos_id, eos_id, pad_id)`` returns (batch, 1 + n),
    n <= max_len: <bos>, then the argmax token of each step; after a row's <eos>, pad_id."""
    model = _tiny_transformer(60).eval()
    with torch.no_grad():
        # Larger decoder weights make the next token depend on the whole prefix, so that every
        # mistake below decodes differently; pad and bos are never predicted.
        for p in model.decoder.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
        model.generator.bias[:2] = -30.0
    g = torch.Generator().manual_seed(65)
    src = torch.randint(4, 11, (4, 6), generator=g)
    src[1, 3:] = 0
    src[2, 2:] = 0
    with torch.no_grad():
        never = _greedy_variant(model, src, 8, 1, -1, 0)
        eos = int(never[0, 4])  # a token the model produces partway: rows stop at different steps
        expected = _greedy_variant(model, src, 8, 1, eos, 0)
        mistakes = {
            "the decoder needs the causal mask (tgt_mask) even here: during training each position "
            "saw only the ones before it": _greedy_variant(model, src, 8, 1, eos, 0, causal=False),
            "the next token comes from the last position's logits (hidden[:, -1]), not the first":
                _greedy_variant(model, src, 8, 1, eos, 0, last=False),
            "after a row's <eos>, fill it with pad_id (and stop once every row has finished)":
                _greedy_variant(model, src, 8, 1, eos, 0, stop=False),
            "the source padding must be masked: pass src_mask = padding_mask(src, pad_id) to encode and decode":
                _greedy_variant(model, src, 8, 1, eos, 0, src_padding=False),
            "the output must start with <bos> (bos_id) in column 0": expected[:, 1:],
        }
    with torch.no_grad():
        got = greedy_decode(model, src.clone(), 8, 1, eos, 0)
    if isinstance(got, Tensor) and got.dtype != torch.long:
        raise CheckFailed(f"greedy_decode should return token ids (torch.long), got {got.dtype}")
    check_close(got, expected, "greedy_decode(model, src, max_len=8, ...)", mistakes, atol=0)


# --- notebook 08_gpt -------------------------------------------------------------------
# (imports inside the functions: course_lib.gpt pulls in the training tools)

def _logits(batch: int = 3, vocab: int = 12, seed: int = 8, scale: float = 2.0) -> Tensor:
    return torch.randn(batch, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def _keep(logits: Tensor, keep: Tensor) -> Tensor:
    return logits.masked_fill(~keep, float("-inf"))


def check_next_token_probs(next_token_probs: Callable[..., Tensor]) -> None:
    """Notebook 08: ``next_token_probs(logits, temperature, top_k)`` returns the probabilities
    softmax(top_k_filter(logits / temperature)) over the last axis, (batch, vocab); ``top_k=None``
    keeps every token."""
    from .generation import top_k_filter

    logits = _logits()
    t, k = 0.7, 4
    expected = top_k_filter(logits / t, k).softmax(-1)
    kth_smallest = logits.topk(k, dim=-1, largest=False).values[..., -1:]
    check_close(next_token_probs(logits.clone(), t, k), expected, f"next_token_probs(logits, {t}, top_k={k})", {
        "the temperature multiplies the logits; divide them by it (t < 1 sharpens)":
            top_k_filter(logits * t, k).softmax(-1),
        "the temperature is missing: divide the logits by it before the softmax": top_k_filter(logits, k).softmax(-1),
        "return probabilities (softmax of the filtered logits), not the logits": top_k_filter(logits / t, k),
        "you kept the k smallest logits; top-k keeps the k largest": _keep(logits / t, logits <= kth_smallest).softmax(-1),
        f"you kept {k + 1} tokens; keep exactly the top {k}": top_k_filter(logits / t, k + 1).softmax(-1),
        "probabilities zeroed after the softmax do not sum to 1: put -inf on the removed logits "
        "before the softmax": (logits / t).softmax(-1) * torch.isfinite(top_k_filter(logits, k)),
        "top-k is missing: only the k most probable tokens may keep probability": (logits / t).softmax(-1),
    })
    check_close(next_token_probs(logits.clone(), 1.0, None), logits.softmax(-1),
                "next_token_probs(logits, 1.0, top_k=None)", {
        "with top_k=None every token stays: filter only when top_k is given": top_k_filter(logits, k).softmax(-1),
    })


def check_top_p_filter(top_p_filter: Callable[[Tensor, float], Tensor]) -> None:
    """Notebook 08: ``top_p_filter(logits, p)`` keeps the most probable tokens until their
    probabilities add up to p (the token that crosses p included), -inf elsewhere, in the
    original token order."""
    from .generation import top_p_filter as reference

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
        "return logits with -inf for the removed tokens, not probabilities": probs.masked_fill(torch.isinf(expected), 0.0),
        "removed tokens need -inf, not 0: exp(0) = 1 still gives them probability":
            logits.masked_fill(torch.isinf(expected), 0.0),
        "the probabilities must come from a softmax over each row (the last axis), not over the batch":
            unsort(sorted_logits.softmax(0).cumsum(-1) - sorted_logits.softmax(0) >= p),
    })
    top1 = reference(logits, 1e-4)
    check_close(top_p_filter(logits.clone(), 1e-4), top1, "top_p_filter(logits, 0.0001)", {
        "the most probable token must always stay, however small p is": torch.full_like(logits, float("-inf")),
    })


def check_attend_with_cache(attend_with_cache: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> None:
    """Notebook 08: ``attend_with_cache(attn, x, past_k, past_v)`` -> (out, k, v) for one new
    position: its query attends to the cached keys and its own; k and v are the cache extended."""
    from .gpt import CausalSelfAttention

    torch.manual_seed(10)
    attn = CausalSelfAttention(16, 4).eval()
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        full, (k_all, v_all) = attn(x)
        q = split_heads(attn.w_q(x[:, 5:]), 4)
        past_k, past_v = k_all[:, :, :5], v_all[:, :, :5]
        result = attend_with_cache(attn, x[:, 5:].clone(), past_k.clone(), past_v.clone())
        if not (isinstance(result, tuple) and len(result) == 3):
            raise CheckFailed("attend_with_cache should return a tuple (out, k, v)")
        out, k, v = result
        alone = attn(x[:, 5:])[0]
        top_left = scaled_dot_product_attention(q, k_all, v_all, torch.ones(1, 6, dtype=torch.bool).tril())[0]
        no_w_o = merge_heads(scaled_dot_product_attention(q, k_all, v_all)[0])
    check_close(k, k_all, "the returned keys k", {
        "the new key goes after the cached ones: torch.cat([past_k, k_new], dim=2)":
            torch.cat([k_all[:, :, 5:], past_k], dim=2),
        "return the whole cache, the past keys and the new one (batch, heads, P + 1, d_head)": k_all[:, :, 5:],
    })
    check_close(v, v_all, "the returned values v", {
        "the new value goes after the cached ones: torch.cat([past_v, v_new], dim=2)":
            torch.cat([v_all[:, :, 5:], past_v], dim=2),
        "v holds values (attn.w_v), not keys": k_all,
    })
    check_close(out, full[:, 5:], "the output out", {
        "the new token attended only to itself: attend over the cached keys and values and its own":
            alone,
        "a causal mask here hides the cache: is_causal=True (or tril) with 1 query and P + 1 keys lets "
        "the query see only the first key; the newest token may see every key, so use no mask":
            attn.w_o(merge_heads(top_left)),
        "the output projection W^O (attn.w_o) is missing": no_w_o,
    })


# --- notebook 07_bert ------------------------------------------------------------------

def _mlm_batch(seed: int = 11) -> tuple[Tensor, Tensor]:
    """(64, 48) ids in 10..499 with [CLS]=1, [SEP]=2, [PAD]=0 placed as a tokenizer would."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 500, (64, 48), generator=g)
    lengths = torch.randint(6, 49, (64,), generator=g)
    ids[:, 0] = 1
    ids[torch.arange(64), lengths - 1] = 2
    ids = ids.masked_fill(torch.arange(48) >= lengths[:, None], 0)
    return ids, torch.isin(ids, torch.tensor([0, 1, 2]))


def check_mask_tokens(mask_tokens: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """mask_tokens(input_ids, special_mask, mask_token_id, vocab_size, generator) -> (inputs, labels):
    BERT's 15% / 80-10-10 corruption."""
    ids, special = _mlm_batch()
    before = ids.clone()
    result = mask_tokens(ids, special, 3, 500, generator=torch.Generator().manual_seed(0))
    if not torch.equal(ids, before):
        raise CheckFailed("mask_tokens changed input_ids in place; corrupt a copy (input_ids.clone())")
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(t, Tensor) for t in result)):
        raise CheckFailed("mask_tokens should return a tuple (inputs, labels) of two tensors"
                          + (" (did you forget to `return` it?)" if result is None else ""))
    inputs, labels = result
    for name, t in (("inputs", inputs), ("labels", labels)):
        if t.shape != ids.shape:
            raise CheckFailed(f"{name} should have the shape of input_ids {tuple(ids.shape)}, got {tuple(t.shape)}")
    chosen = labels != -100
    if chosen.all():
        raise CheckFailed("labels should be -100 wherever the token was not chosen: the loss must skip "
                          "those positions (did you copy input_ids into labels?)")
    if (chosen & special).any():
        raise CheckFailed("a special token ([CLS], [SEP]) or padding was chosen: never choose a position "
                          "where special_mask is True")
    if not torch.equal(labels[chosen], ids[chosen]):
        raise CheckFailed("labels should hold the original token at each chosen position "
                          "(not [MASK], not the corrupted input)")
    if not torch.equal(inputs[~chosen], ids[~chosen]):
        raise CheckFailed("a token that was not chosen (label -100) was changed: only chosen tokens "
                          "are corrupted")
    rate = chosen.sum().item() / (~special).sum().item()
    if not 0.12 < rate < 0.18:
        raise CheckFailed(f"{rate:.1%} of the eligible tokens were chosen, expected about 15%")
    n = chosen.sum().item()
    masked = (inputs[chosen] == 3).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    if masked > 0.95:
        raise CheckFailed("every chosen token became [MASK]: 10% of them should become a random token "
                          "and 10% stay as they are")
    if not 0.72 < masked < 0.88:
        raise CheckFailed(f"{masked:.0%} of the chosen tokens became [MASK], expected about 80%")
    if not 0.04 < kept < 0.17:
        raise CheckFailed(f"{kept:.0%} of the chosen tokens stayed as they were, expected about 10%")
    if not 0.04 < 1 - masked - kept < 0.17:
        raise CheckFailed(f"{1 - masked - kept:.0%} of the chosen tokens became a random token, expected about 10%")


def check_nsp_pairs(make_nsp_pairs: Callable[..., list]) -> None:
    """make_nsp_pairs(documents, rng) -> [(sentence_a, sentence_b, is_next), ...]; two document sets:
    many documents of mixed lengths (one has a single sentence), and two long ones, where a random B
    drawn from any document would often come from A's own."""
    for documents in ([[f"doc{d}-sentence{s}" for s in range(n)] for d, n in enumerate([5, 1, 8, 3, 12, 6, 2, 9] * 4)],
                      [[f"doc{d}-sentence{s}" for s in range(20)] for d in range(2)]):
        _check_nsp_pairs_on(make_nsp_pairs, documents)


def _check_nsp_pairs_on(make_nsp_pairs: Callable[..., list], documents: list[list[str]]) -> None:
    import random
    where = {s: (d, i) for d, doc in enumerate(documents) for i, s in enumerate(doc)}
    pairs = make_nsp_pairs(documents, random.Random(0))
    if not isinstance(pairs, list):
        raise CheckFailed(f"make_nsp_pairs should return a list of (sentence_a, sentence_b, is_next) tuples, "
                          f"got {type(pairs).__name__}" + (" (did you forget to `return` it?)" if pairs is None else ""))
    if not all(isinstance(p, tuple) and len(p) == 3 for p in pairs):
        raise CheckFailed("each pair should be a tuple (sentence_a, sentence_b, is_next)")
    for a, b, is_next in pairs:
        if a not in where or b not in where:
            raise CheckFailed(f"sentences should be taken from the documents as they are, got {a!r} / {b!r}")
        (da, ia), (db, ib) = where[a], where[b]
        if ia == len(documents[da]) - 1:
            raise CheckFailed(f"{a!r} is the last sentence of its document: it has no next sentence, so it "
                              "should not be a sentence A")
        if is_next and not (da == db and ib == ia + 1):
            raise CheckFailed(f"({a!r}, {b!r}) is marked is_next=True but B is not the sentence after A")
        if not is_next and da == db:
            raise CheckFailed(f"({a!r}, {b!r}) is a random pair whose B comes from A's own document: draw B "
                              "from another document")
    expected = sorted(s for doc in documents for s in doc[:-1])
    if sorted(a for a, _, _ in pairs) != expected:
        raise CheckFailed(f"every sentence that has a next sentence should be sentence A exactly once "
                          f"({len(expected)} pairs), got {len(pairs)} pairs")
    share = sum(bool(p[2]) for p in pairs) / len(pairs)
    if not 0.35 < share < 0.65:
        raise CheckFailed(f"{share:.0%} of the pairs are real next sentences, expected about 50%")


def check_classification_head(head_class: type[nn.Module]) -> None:
    """head_class(hidden_size, num_labels, dropout) with attributes dense, dropout, classifier:
    logits = classifier(dropout(tanh(dense(hidden_states[:, 0]))))."""
    from .bert import ClassificationHead
    torch.manual_seed(0)
    reference = ClassificationHead(16, 3, dropout=0.1).eval()
    head = head_class(16, 3, 0.1)
    for name in ("dense", "dropout", "classifier"):
        if not hasattr(head, name):
            raise CheckFailed(f"the head should have an attribute `{name}` (see the contract)")
    try:
        head.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        raise CheckFailed(f"dense should be nn.Linear(hidden_size, hidden_size) and classifier "
                          f"nn.Linear(hidden_size, num_labels): {str(error).splitlines()[-1].strip()}") from None
    head.eval()
    h = torch.randn(4, 7, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = head(h)
        classify = lambda v: reference.classifier(torch.tanh(reference.dense(v)))
        mistakes = {
            "it averages all positions; BERT classifies from the first token, [CLS] (hidden_states[:, 0])":
                classify(h.mean(1)),
            "it reads the last position; [CLS] is the first one (hidden_states[:, 0])": classify(h[:, -1]),
            "the tanh after dense is missing (BERT's pooler is tanh(dense(h_cls)))":
                reference.classifier(reference.dense(h[:, 0])),
            "dense (the pooler) is skipped: classifier(dropout(tanh(dense(h_cls))))":
                reference.classifier(h[:, 0]),
        }
        check_close(out, reference(h), "the logits", mistakes)
    head.train()
    torch.manual_seed(1)
    if torch.allclose(head(h), head(h)):
        raise CheckFailed("in training mode two calls gave the same logits: is dropout applied?")


# --- notebook 09_efficient_attention ---------------------------------------------------

def check_sliding_window_mask(sliding_window_mask: Callable[..., Tensor]) -> None:
    """Notebook 09: ``sliding_window_mask(seq_len, window, causal=False)`` returns the (seq_len, seq_len)
    bool mask, True where |i - j| <= window, and only j <= i when ``causal``."""
    from .efficient import sliding_window_mask as reference
    for seq, window in ((7, 2), (6, 0), (5, 9)):
        pos = torch.arange(seq)
        offset = pos[:, None] - pos[None, :]  # i - j
        band = lambda w: offset.abs() <= w
        past, future = offset >= 0, offset <= 0
        for causal in (False, True):
            what = f"sliding_window_mask({seq}, {window}{', causal=True' if causal else ''})"
            actual = sliding_window_mask(seq, window, causal=True) if causal else sliding_window_mask(seq, window)
            if isinstance(actual, Tensor) and actual.dtype != torch.bool:
                raise CheckFailed(f"{what} should be a torch.bool tensor (True = may attend), got {actual.dtype}: "
                                  "a comparison such as (i - j).abs() <= window gives bools")
            expected = reference(seq, window, causal)
            keep = past if causal else torch.ones_like(past)
            check_close(actual, expected, what, {
                "the mask has the wrong polarity: True means 'may attend', so True inside the window": ~expected,
                "window off by one: `window` positions on each side are visible, |i - j| <= window "
                "(you used < window)": band(window - 1) & keep,
                "window off by one: one position too many on each side; |i - j| <= window": band(window + 1) & keep,
                "causal=True is ignored: a query must not see the keys after it (j > i)": band(window),
                "the causal mask hides the past instead of the future: keep the keys j <= i": band(window) & future,
                "with causal=True the window still applies: keys i - window <= j <= i, not all of 0..i":
                    past & torch.ones_like(band(window)),
                "with causal=False the window reaches both ways: |i - j| <= window, past and future":
                    band(window) & past,
                "the diagonal is missing: every query may attend to itself (i == j)": expected & (offset != 0),
            })


def check_linear_attention(linear_attention: Callable[..., Tensor]) -> None:
    """Notebook 09: ``linear_attention(q, k, v, causal=False)`` equals course_lib.efficient's
    (feature map elu(x) + 1, normalized, running sums when causal)."""
    from .efficient import elu_feature_map, linear_attention as reference
    q, k, v = _qkv(2, 6, 6, 4, 3, seed=12)
    d_k = q.shape[-1]

    def quadratic(causal: bool, phi_q=elu_feature_map, phi_k=elu_feature_map, normalize: str = "same") -> Tensor:
        """The formula computed through the (seq, seq) kernel matrix, right or with one mistake."""
        a = phi_q(q) @ phi_k(k).transpose(-2, -1)
        num = (a.tril() if causal else a) @ v
        if normalize == "none":
            return num
        den = a.sum(-1, keepdim=True) if normalize == "all keys" else (a.tril() if causal else a).sum(-1, keepdim=True)
        return num / den

    elu = lambda x: torch.nn.functional.elu(x)
    for causal in (False, True):
        what = f"linear_attention(q, k, v{', causal=True' if causal else ''})"
        actual = linear_attention(q.clone(), k.clone(), v.clone(), causal=True) if causal else \
            linear_attention(q.clone(), k.clone(), v.clone())
        mistakes = {
            "the feature map is missing: apply phi(x) = elu(x) + 1 to q and k":
                quadratic(causal, phi_q=lambda x: x, phi_k=lambda x: x),
            "phi(x) = elu(x) + 1: the + 1 is missing (it keeps the features positive)":
                quadratic(causal, phi_q=elu, phi_k=elu),
            "the feature map must be applied to the keys too: phi(k)": quadratic(causal, phi_k=lambda x: x),
            "the feature map must be applied to the queries too: phi(q)": quadratic(causal, phi_q=lambda x: x),
            "the feature map is elu(x) + 1, not exp(x)": quadratic(causal, phi_q=torch.exp, phi_k=torch.exp),
            "no 1/sqrt(d_k) scaling in linear attention: phi(q), not phi(q / sqrt(d_k))":
                quadratic(causal, phi_q=lambda x: elu_feature_map(x / math.sqrt(d_k))),
            "the normalizer is missing: divide by phi(q_i) . sum_j phi(k_j)": quadratic(causal, normalize="none"),
            "this is softmax attention; linear attention replaces exp(q . k / sqrt(d_k)) by phi(q) . phi(k)":
                scaled_dot_product_attention(q, k, v, causal_mask(6) if causal else None)[0],
        }
        if causal:
            mistakes |= {
                "causal=True is ignored: query i may only use the keys j <= i (running sums, cumsum over seq)":
                    quadratic(False),
                "the normalizer must be a running sum too: sum_{j <= i} phi(k_j), not over all keys":
                    quadratic(True, normalize="all keys"),
            }
        else:
            mistakes["causal=False must use all the keys; you used only j <= i"] = quadratic(True)
        check_close(actual, reference(q, k, v, causal, eps=0.0), what, mistakes, atol=1e-5)
    # cross-attention: as many outputs as queries, keys and values of another length
    q, k, v = _qkv(2, 3, 7, 4, 5, seed=13)
    check_close(linear_attention(q, k, v), reference(q, k, v, eps=0.0),
                "linear_attention(q, k, v) with 3 queries and 7 keys (d_k = 4, d_v = 5)", atol=1e-5)


def check_choice(answer, options: tuple[int, ...], name: str = "answer") -> None:
    """A quiz answer must be one of the option numbers (whether it is right is graded later)."""
    if answer not in options:
        raise CheckFailed(f"{name} should be one of {', '.join(map(str, options))}; got {answer!r}")
