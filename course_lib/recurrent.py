"""Recurrent encoder-decoders, the models Transformers replaced (introduced in notebook 00_recurrence).

A GRU encoder reads the source one position at a time and a GRU decoder writes the target one
position at a time, either from the encoder's last state alone (Sutskever et al., 2014; Cho
et al., 2014) or looking at every encoder state through additive attention (Bahdanau et al.,
2015). ``Seq2Seq`` has the interface of course_lib's Transformer (``encode``, ``decode``,
``generator``, ``forward``), so ``training.fit`` trains it and ``decoding.greedy_decode``
decodes it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .attention import padding_mask
from .data.tokenizers import PAD_ID
from .validation import check, check_int, check_tensor, check_token_ids


def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
             bias_hh: Tensor) -> Tensor:
    """One GRU step, as ``torch.nn.GRUCell`` computes it: x (batch, d_in), h (batch, d_hidden) ->
    the next state (batch, d_hidden).

    weight_ih (3 d_hidden, d_in) and weight_hh (3 d_hidden, d_hidden) stack the reset, update
    and candidate rows in that order; r = sigmoid(.), z = sigmoid(.), n = tanh(x W_in + b_in +
    r * (h W_hn + b_hn)), h' = (1 - z) * n + z * h.
    """
    check_tensor("x", x, "batch d_in", "float")
    check_tensor("h", h, "batch d_hidden", "float", batch=x.shape[0])
    d_in, gates = x.shape[1], 3 * h.shape[1]
    check_tensor("weight_ih", weight_ih, "gates d_in", "float", gates=gates, d_in=d_in)
    check_tensor("weight_hh", weight_hh, "gates d_hidden", "float", gates=gates, d_hidden=h.shape[1])
    check_tensor("bias_ih", bias_ih, "gates", "float", gates=gates)
    check_tensor("bias_hh", bias_hh, "gates", "float", gates=gates)
    r_x, z_x, n_x = (x @ weight_ih.T + bias_ih).chunk(3, dim=-1)
    r_h, z_h, n_h = (h @ weight_hh.T + bias_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)  # the reset gate scales the state's contribution, bias included
    return (1 - z) * n + z * h


def additive_scores(query: Tensor, keys: Tensor, w_q: Tensor, w_k: Tensor, v: Tensor) -> Tensor:
    """Bahdanau's scores e_j = v . tanh(W_q q + W_k k_j): query (batch, d_q), keys (batch, seq, d_k),
    w_q (d_attn, d_q), w_k (d_attn, d_k), v (d_attn,) -> (batch, seq)."""
    check_tensor("query", query, "batch d_q", "float")
    check_tensor("keys", keys, "batch seq d_k", "float", batch=query.shape[0])
    check_tensor("v", v, "d_attn", "float")
    check_tensor("w_q", w_q, "d_attn d_q", "float", d_attn=v.shape[0], d_q=query.shape[1])
    check_tensor("w_k", w_k, "d_attn d_k", "float", d_attn=v.shape[0], d_k=keys.shape[2])
    return torch.tanh((query @ w_q.T).unsqueeze(1) + keys @ w_k.T) @ v


class AdditiveAttention(nn.Module):
    """Additive attention: softmax over the keys of ``additive_scores``, and the weighted sum of the keys."""

    def __init__(self, d_query: int, d_key: int, d_attn: int) -> None:
        super().__init__()
        for name, value in (("d_query", d_query), ("d_key", d_key), ("d_attn", d_attn)):
            check_int(name, value, low=1)
        self.w_q = nn.Linear(d_query, d_attn, bias=False)
        self.w_k = nn.Linear(d_key, d_attn, bias=False)
        self.v = nn.Parameter(torch.randn(d_attn) / d_attn ** 0.5)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query (batch, d_query), keys (batch, seq, d_key), mask (batch, seq) True = may attend.
        Returns the context (batch, d_key) and the weights (batch, seq)."""
        scores = additive_scores(query, keys, self.w_q.weight, self.w_k.weight, self.v)
        if mask is not None:
            check_tensor("mask", mask, "batch seq", "bool", batch=keys.shape[0], seq=keys.shape[1])
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        return (weights.unsqueeze(1) @ keys).squeeze(1), weights


class Seq2Seq(nn.Module):
    """A GRU encoder-decoder over one shared vocabulary, with or without additive attention.

    Without attention the decoder starts from the encoder's last state and sees nothing else
    of the source: a fixed-size summary, whatever the source's length. With attention it
    also reads, at every step, a weighted average of all encoder states, chosen by its own
    state (Bahdanau et al., 2015, with a one-directional encoder).
    """

    def __init__(self, vocab_size: int, d_emb: int = 32, d_hidden: int = 64, attention: bool = True) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_emb", d_emb), ("d_hidden", d_hidden)):
            check_int(name, value, low=1)
        self.embed = nn.Embedding(vocab_size, d_emb, padding_idx=PAD_ID)  # source and target share it
        self.encoder = nn.GRU(d_emb, d_hidden, batch_first=True)
        self.attention = AdditiveAttention(d_hidden, d_hidden, d_hidden) if attention else None
        self.cell = nn.GRUCell(d_emb + (d_hidden if attention else 0), d_hidden)
        # the output reads the new state, and with attention the context as well (Bahdanau's deep output, shallow)
        self.generator = nn.Linear(d_hidden * (2 if attention else 1), vocab_size)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (batch, src) ids, src_mask (batch, 1, src) True at real tokens -> encoder states
        (batch, src, d_hidden), zero at padding."""
        check_token_ids("src", src, self.embed.num_embeddings, "batch src")
        lengths = (padding_mask(src, PAD_ID) if src_mask is None else src_mask).reshape(src.shape[0], -1).sum(-1)
        check(bool((lengths > 0).all()), "src", "at least one real token per row", src)
        packed = pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True, total_length=src.shape[1])
        return states

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               tgt_mask: Tensor | None = None, weights: list[Tensor] | None = None) -> Tensor:
        """tgt (batch, tgt) ids, memory (batch, src, d_hidden) from ``encode`` -> (batch, tgt, d_out),
        one output per position, computed one position after the other (the recurrence is causal,
        so ``tgt_mask`` is not needed). ``weights``, if a list, receives each step's attention
        (batch, src)."""
        check_token_ids("tgt", tgt, self.embed.num_embeddings, "batch tgt")
        keep = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device) if src_mask is None \
            else src_mask.reshape(memory.shape[0], -1)
        last = keep.sum(-1) - 1
        h = memory[torch.arange(memory.shape[0], device=memory.device), last]  # the state after the last real token
        outputs = []
        for token in self.embed(tgt).unbind(1):  # one step after the other: the recurrence
            if self.attention is None:
                h = self.cell(token, h)
                outputs.append(h)
            else:
                context, w = self.attention(h, memory, keep)
                if weights is not None:
                    weights.append(w)
                h = self.cell(torch.cat([token, context], -1), h)
                outputs.append(torch.cat([h, context], -1))
        return torch.stack(outputs, 1)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        """src (batch, src), tgt (batch, tgt) ids -> logits (batch, tgt, vocab), with teacher forcing."""
        check_tensor("tgt", tgt, "batch tgt", "index", batch=src.shape[0])
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask))
