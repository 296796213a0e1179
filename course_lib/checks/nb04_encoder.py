"""Checks of notebook 04_encoder: LayerNorm from scratch, the post-LN encoder layer."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import padding_mask
from ..encoder import EncoderLayer, LayerNorm
from .engine import CheckFailed, check_close, exercise, is_close, layer_and_reference


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


@exercise(forbid={"torch.nn.LayerNorm": nn.LayerNorm, "torch.nn.functional.layer_norm": nn.functional.layer_norm,
                  "torch.layer_norm": torch.layer_norm, "course_lib.encoder.LayerNorm": LayerNorm})
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


@exercise(forbid={"course_lib.encoder.EncoderLayer": EncoderLayer,
                  "torch.nn.TransformerEncoderLayer": nn.TransformerEncoderLayer})
def check_encoder_layer(layer_class: type[nn.Module]) -> None:
    """Notebook 04: the student's post-LN encoder layer equals course_lib's ``EncoderLayer``.

    ``layer_class(d_model, num_heads, d_ff, dropout)`` has the sub-modules of
    ``course_lib.encoder.EncoderLayer`` and ``forward(x, mask=None) -> x``.
    """
    d_model, num_heads, d_ff = 8, 2, 16
    layer, reference, g = layer_and_reference(layer_class, EncoderLayer, (d_model, num_heads, d_ff),
                                               ("norm1", "norm2"), seed=10,
                                               modules=("self_attn", "ff", "norm1", "norm2", "dropout1", "dropout2"))

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
    if not (isinstance(actual, Tensor) and is_close(actual, expected, 1e-5)):
        raise CheckFailed("dropout is in the wrong place (or missing): in training each sub-layer's output "
                          "goes through its dropout before the residual sum, "
                          "norm1(x + dropout1(self_attn(x)[0])) and norm2(x + dropout2(ff(x)))")
