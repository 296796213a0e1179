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


def check_encoder_layer(layer_class: type[nn.Module]) -> None:
    """Notebook 04: the student's post-LN encoder layer equals course_lib's ``EncoderLayer``.

    ``layer_class(d_model, num_heads, d_ff, dropout)`` has the sub-modules of
    ``course_lib.encoder.EncoderLayer`` and ``forward(x, mask=None) -> x``.
    """
    d_model, num_heads, d_ff = 8, 2, 16
    torch.manual_seed(10)
    layer = layer_class(d_model, num_heads, d_ff, dropout=0.0).eval()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():  # gains and biases that differ per norm, so a mixed-up norm shows
        for norm in (layer.norm1, layer.norm2):
            norm.weight.copy_(torch.rand(d_model, generator=g) + 0.5)
            norm.bias.copy_(torch.rand(d_model, generator=g) - 0.5)
    reference = EncoderLayer(d_model, num_heads, d_ff, dropout=0.0).eval()
    try:
        reference.load_state_dict(layer.state_dict())
    except RuntimeError as error:
        raise CheckFailed("keep the given __init__: the layer needs exactly the sub-modules self_attn, "
                          f"ff, norm1, norm2, dropout1, dropout2 ({error})") from None

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
    torch.manual_seed(6)
    layer = layer_class(d_model, num_heads, d_ff, dropout=0.0).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # gains and biases that differ per norm, so a mixed-up norm shows
        for norm in (layer.norm1, layer.norm2, layer.norm3):
            norm.weight.copy_(torch.rand(d_model, generator=g) + 0.5)
            norm.bias.copy_(torch.rand(d_model, generator=g) - 0.5)
    reference = DecoderLayer(d_model, num_heads, d_ff, dropout=0.0).eval()
    try:
        reference.load_state_dict(layer.state_dict())
    except RuntimeError as error:
        raise CheckFailed("keep the given __init__: the layer needs exactly the sub-modules self_attn, "
                          f"cross_attn, ff, norm1, norm2, norm3 ({error})") from None

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
