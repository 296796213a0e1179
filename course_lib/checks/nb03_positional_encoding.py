"""Checks of notebook 03_positional_encoding: the sinusoidal table, token embeddings plus positions."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..positional import SinusoidalPositionalEncoding, TokenEmbedding, sinusoidal_encoding
from .engine import CheckFailed, check_close, exercise


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


@exercise(forbid={"course_lib.positional.sinusoidal_encoding": sinusoidal_encoding,
                  "course_lib.positional.SinusoidalPositionalEncoding": SinusoidalPositionalEncoding})
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


@exercise(forbid={"course_lib.positional.TokenEmbedding": TokenEmbedding,
                  "course_lib.positional.SinusoidalPositionalEncoding": SinusoidalPositionalEncoding})
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
