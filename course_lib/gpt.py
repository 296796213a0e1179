"""GPT: a decoder-only Transformer language model (introduced in notebook 08_gpt).

A GPT keeps only the decoder's masked self-attention: no encoder, no cross-attention. It
reads tokens x_0 .. x_{T-1} and predicts, at every position t, the next token x_{t+1}: the
targets are the inputs shifted by one, and the causal mask keeps position t from seeing
what it must predict. Generation then appends one predicted token at a time.

The layout is GPT-2's:
- token embeddings plus learned position embeddings (notebook 03), dropout;
- ``num_layers`` pre-LN blocks: x = x + attn(norm1(x)); x = x + ff(norm2(x)), with a GELU
  feed-forward network 4 * d_model wide (notebook 04);
- a final LayerNorm and the output projection, tied to the token embedding matrix.

Because of the causal mask, the keys and values of earlier positions never change as the
text grows. ``forward(idx, past)`` therefore takes the keys and values of the tokens seen
so far and returns them extended: generating a token then costs one position's work
instead of the whole prefix's (the KV cache).

``GPT.from_gpt2`` loads the weights of a Hugging Face ``GPT2LMHeadModel``. Training is the
course's one loop, ``course_lib.training.fit``, on ``course_lib.batching.lm_batches``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import scaled_dot_product_attention
from .encoder import FeedForward, LayerNorm
from .multihead import MultiHeadAttention, merge_heads, split_heads
from .positional import LearnedPositionalEmbedding
from .validation import check, check_choice, check_int, check_number, check_tensor, check_token_ids, check_type

# transformers' names of GPT-2's activation -> FeedForward's
_GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
KV = tuple[Tensor, Tensor]  # one layer's keys and values, each (batch, heads, seq, d_head)


@dataclass
class GPTConfig:
    """The sizes of a GPT (introduced in notebook 08_gpt). The defaults are the notebook's
    character model; GPT-2 small is ``GPTConfig(50257, 1024, 12, 12, 768)``."""

    vocab_size: int
    max_len: int = 64         # the context: the most positions the model has embeddings for
    num_layers: int = 4
    num_heads: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    fast: bool = True         # fused kernels: F.scaled_dot_product_attention, torch's LayerNorm
    activation: str = "gelu"  # "gelu_tanh" for GPT-2's weights

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "num_layers", "num_heads", "d_model"):
            check_int(name, getattr(self, name), low=1)
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads must divide d_model={self.d_model}, got {self.num_heads}")
        check_number("dropout", self.dropout, 0.0, 1.0)
        check_number("layer_norm_eps", self.layer_norm_eps, 0.0, low_open=True)
        check_choice("activation", self.activation, sorted(set(_GPT2_ACTIVATIONS.values())))


def layer_norm(config: GPTConfig) -> nn.Module:
    """Notebook 04's LayerNorm, or torch's fused one (same parameters and results) when ``config.fast``."""
    check_type("config", config, GPTConfig)
    if config.fast:
        return nn.LayerNorm(config.d_model, config.layer_norm_eps)
    return LayerNorm(config.d_model, config.layer_norm_eps)


class CausalSelfAttention(MultiHeadAttention):
    """Multi-head self-attention under a causal mask, with a KV cache (introduced in notebook 08_gpt).

    The same projections ``w_q, w_k, w_v, w_o`` as notebook 02's MultiHeadAttention.
    """

    def forward(self, x: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        """x: (batch, T, d_model), the new positions; past: the keys and values of the positions
        before them, each (batch, heads, P, d_head), or None.

        Returns the output (batch, T, d_model) and the keys and values of all P + T positions.
        Query i (position P + i) attends to keys 0 .. P + i.
        """
        check_tensor("x", x, "batch T d_model", "float", d_model=self.d_model)
        if past is not None:
            _check_past("past", past, x.shape[0], self.num_heads, self.d_model // self.num_heads)
        q = split_heads(self.w_q(x), self.num_heads)
        k = split_heads(self.w_k(x), self.num_heads)
        v = split_heads(self.w_v(x), self.num_heads)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        t, s = q.shape[2], k.shape[2]
        dropout_p = self.dropout if self.training else 0.0
        # The new queries sit at positions s - t .. s - 1 and see every cached key. One new
        # query needs no mask at all; without a cache the mask is the usual causal one.
        mask = None if t == 1 else torch.ones(t, s, dtype=torch.bool, device=x.device).tril(diagonal=s - t)
        if self.fast and t == s:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=t > 1)
        elif self.fast:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        else:
            out = scaled_dot_product_attention(q, k, v, mask, dropout_p)[0]
        return self.w_o(merge_heads(out)), (k, v)


class Block(nn.Module):
    """A pre-LN decoder block without cross-attention:
    x = x + dropout(attn(norm1(x))); x = x + dropout(ff(norm2(x)))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        check_type("config", config, GPTConfig)
        d = config.d_model
        self.norm1 = layer_norm(config)
        self.attn = CausalSelfAttention(d, config.num_heads, config.dropout, config.bias, config.fast)
        self.norm2 = layer_norm(config)
        self.ff = FeedForward(d, 4 * d, config.dropout, activation=config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        """x: (batch, T, d_model) -> (batch, T, d_model), and this layer's keys and values."""
        check_tensor("x", x, "batch T d_model", "float", d_model=self.attn.d_model)
        attended, present = self.attn(self.norm1(x), past)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.norm2(x))), present


class GPT(nn.Module):
    """A decoder-only language model (introduced in notebook 08_gpt).

    ``forward(idx, past=None)`` -> (logits, present): idx (batch, T) token ids; logits
    (batch, T, vocab_size), row t scoring the token that follows idx[:, t]; present, one
    (keys, values) pair per layer covering every position so far, to pass back as ``past``
    with the next tokens.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        check_type("config", config, GPTConfig)
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = LearnedPositionalEmbedding(config.max_len, config.d_model, config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = layer_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok.weight  # weight tying: one (vocab, d_model) matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization: N(0, 0.02) for weights, zero biases, and the projections that
        write into the residual stream (w_o, linear2) scaled by 1/sqrt(2 * num_layers), so that the
        stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for linear in (block.attn.w_o, block.ff.linear2):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * self.config.num_layers))

    def num_parameters(self, embeddings: bool = True) -> int:
        """Number of parameters (the tied matrix counted once); without the position embeddings
        when ``embeddings`` is False."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.pos.embedding.weight.numel()

    def forward(self, idx: Tensor, past: list[KV] | None = None) -> tuple[Tensor, list[KV]]:
        check_token_ids("idx", idx, self.config.vocab_size, "batch T")
        if past is not None:
            check(isinstance(past, (list, tuple)) and len(past) == len(self.blocks), "past",
                  f"a list of {len(self.blocks)} (keys, values) pairs, one per layer (the present of the last call)",
                  past, TypeError)
            _check_past("past[0]", past[0], idx.shape[0], self.config.num_heads,
                        self.config.d_model // self.config.num_heads)
        start = 0 if past is None else past[0][0].shape[2]
        if start + idx.shape[1] > self.config.max_len:
            raise ValueError(f"idx must hold at most max_len={self.config.max_len} positions with the cache's, got "
                             f"{start} cached + {idx.shape[1]} new: crop the input to the last max_len tokens")
        positions = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.pos.dropout(self.tok(idx) + self.pos.embedding(positions))
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            present.append(kv)
        return self.lm_head(self.norm(x)), present

    @classmethod
    def from_gpt2(cls, hf_model: nn.Module, fast: bool = True) -> "GPT":
        """A GPT with the weights of a Hugging Face ``GPT2LMHeadModel`` (introduced in notebook 08_gpt).

        GPT-2 stores its projections as ``Conv1D`` with (in, out) weights, the transpose of
        nn.Linear's, and packs W_q, W_k, W_v into one ``c_attn``. GPT-2 was trained with the
        tanh approximation of GELU ("gelu_new"), which the model takes over from the config.
        The model gets the weights' dtype.
        """
        check(hasattr(hf_model, "state_dict") and hasattr(getattr(hf_model, "config", None), "activation_function"),
              "hf_model", "a transformers GPT2LMHeadModel", hf_model, TypeError)
        hf = hf_model.config
        if hf.activation_function not in _GPT2_ACTIVATIONS:
            raise ValueError(f"activation_function must be one of {sorted(_GPT2_ACTIVATIONS)}, "
                             f"got {hf.activation_function!r}")
        config = GPTConfig(vocab_size=hf.vocab_size, max_len=hf.n_positions, num_layers=hf.n_layer,
                           num_heads=hf.n_head, d_model=hf.n_embd, dropout=0.0,
                           layer_norm_eps=hf.layer_norm_epsilon, fast=fast,
                           activation=_GPT2_ACTIVATIONS[hf.activation_function])
        sd = hf_model.state_dict()
        model = cls(config).to(sd["transformer.wte.weight"].dtype)
        with torch.no_grad():
            model.tok.weight.copy_(sd["transformer.wte.weight"])
            model.pos.embedding.weight.copy_(sd["transformer.wpe.weight"])
            model.norm.load_state_dict({"weight": sd["transformer.ln_f.weight"], "bias": sd["transformer.ln_f.bias"]})
            for i, block in enumerate(model.blocks):
                p = f"transformer.h.{i}."
                block.norm1.load_state_dict({"weight": sd[p + "ln_1.weight"], "bias": sd[p + "ln_1.bias"]})
                block.norm2.load_state_dict({"weight": sd[p + "ln_2.weight"], "bias": sd[p + "ln_2.bias"]})
                qkv_w, qkv_b = sd[p + "attn.c_attn.weight"].t().chunk(3), sd[p + "attn.c_attn.bias"].chunk(3)
                for linear, w, b in zip((block.attn.w_q, block.attn.w_k, block.attn.w_v), qkv_w, qkv_b):
                    linear.weight.copy_(w)
                    linear.bias.copy_(b)
                for linear, name in ((block.attn.w_o, "attn.c_proj"), (block.ff.linear1, "mlp.c_fc"),
                                     (block.ff.linear2, "mlp.c_proj")):
                    linear.weight.copy_(sd[p + name + ".weight"].t())
                    linear.bias.copy_(sd[p + name + ".bias"])
        return model


def _check_past(name: str, past: object, batch: int, heads: int, d_head: int) -> None:
    """One layer's cache: (keys, values), each (batch, heads, P, d_head)."""
    check(isinstance(past, (list, tuple)) and len(past) == 2, name,
          "one layer's (keys, values) pair", past, TypeError)
    for part, t in zip(("keys", "values"), past):
        check_tensor(f"{name}'s {part}", t, "batch heads P d_head", "float", batch=batch, heads=heads, d_head=d_head)
