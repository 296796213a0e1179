"""Positional information for attention (introduced in notebook 03_positional_encoding).

Self-attention treats its input as a set: permute the tokens and the outputs permute the
same way. A Transformer therefore adds a position-dependent vector to each token embedding,
either the fixed sinusoidal encoding of "Attention Is All You Need" or a learned embedding
per position (BERT, GPT).

The sinusoidal table needs an even ``d_model``: it is made of (sin, cos) pairs, one pair per
frequency, and that pairing is what makes PE(pos + k) a rotation of PE(pos). An odd width
would leave a sine without its cosine, so ``sinusoidal_encoding`` refuses it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .validation import check_int, check_number, check_tensor, check_token_ids

BASE = 10000.0  # the paper's base: wavelengths run from 2*pi to BASE * 2*pi positions


def sinusoidal_encoding(max_len: int, d_model: int, *, dtype: torch.dtype | None = None) -> Tensor:
    """The sinusoidal position table of "Attention Is All You Need" (introduced in notebook 03_positional_encoding).

    Returns a (max_len, d_model) tensor with
    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)) and PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model)),
    positions counted from 0. ``d_model`` must be even (ValueError otherwise, see the module
    docstring). Computed in float64 and returned in ``dtype`` (default: torch's default dtype),
    so that long tables keep full precision.
    """
    check_int("max_len", max_len, low=1)
    check_int("d_model", d_model, low=2)
    if d_model % 2:
        raise ValueError(
            f"d_model must be a positive even int, got {d_model!r}: the encoding is made of "
            "(sin, cos) pairs, one pair per frequency, in columns (2i, 2i+1)"
        )
    max_len, d_model = int(max_len), int(d_model)
    positions = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)                # (max_len, 1)
    frequencies = BASE ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d_model / 2,)
    angles = positions * frequencies                                                   # (max_len, d_model / 2)
    # stack then flatten interleaves: column 2i is the sine, column 2i+1 its cosine
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
    return pe.to(dtype or torch.get_default_dtype())


def _check_input(x: Tensor, d_model: int, max_len: int) -> None:
    # a float x: adding the table to integer ids would round every position's vector
    check_tensor("x", x, "batch seq d_model", "float", d_model=d_model)
    if x.shape[1] > max_len:
        raise ValueError(
            f"x must have at most max_len={max_len} positions, got {x.shape[1]}; "
            "build the module with a larger max_len"
        )


class TokenEmbedding(nn.Module):
    """Token ids to vectors, scaled by sqrt(d_model) as in the paper (introduced in notebook 03_positional_encoding).

    ``embedding`` is the underlying ``nn.Embedding``; a decoder can tie its output projection
    to ``embedding.weight``. The weights start at N(0, 1/d_model), the scale that suits a tied
    output projection; the sqrt(d_model) factor then brings the embedded tokens to unit
    variance, the same order as the positional encoding added to them.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, low=1)
        check_int("d_model", d_model, low=1)
        check_int("padding_idx", padding_idx, 0, vocab_size - 1, optional=True)
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        if self.embedding.padding_idx is not None:  # re-initialising undid nn.Embedding's zero row
            with torch.no_grad():
                self.embedding.weight[self.embedding.padding_idx].zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (batch, seq) integer ids, each below vocab_size -> (batch, seq, d_model)."""
        check_token_ids("tokens", tokens, self.embedding.num_embeddings)
        return self.embedding(tokens) * math.sqrt(self.d_model)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table, then dropout (introduced in notebook 03_positional_encoding).

    The table is a non-persistent buffer: it moves with ``.to(device)`` but stays out of the
    state dict, since it is recomputed from (max_len, d_model) and holds nothing learned.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.1) -> None:
        super().__init__()
        check_number("dropout", dropout, 0.0, 1.0)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, seq, d_model) -> dropout(x + pe[:seq]), same shape, dtype and device as x."""
        _check_input(x, self.d_model, self.max_len)
        return self.dropout(x + self.pe[: x.shape[1]].to(dtype=x.dtype, device=x.device))


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position, then dropout, as BERT and GPT do
    (introduced in notebook 03_positional_encoding).

    ``embedding`` is ``nn.Embedding(max_len, d_model)``: row p is the vector of position p,
    initialised N(0, 0.02^2) as in BERT and GPT-2. Unlike the sinusoidal table it cannot
    go past ``max_len``: there is no row for a longer sequence.
    """

    def __init__(self, max_len: int, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_int("max_len", max_len, low=1)
        check_int("d_model", d_model, low=1)
        check_number("dropout", dropout, 0.0, 1.0)
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, seq, d_model) -> dropout(x + embedding.weight[:seq]), same shape, dtype and device as x."""
        _check_input(x, self.d_model, self.max_len)
        return self.dropout(x + self.embedding.weight[: x.shape[1]].to(dtype=x.dtype, device=x.device))
