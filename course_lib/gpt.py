"""GPT: a decoder-only Transformer language model (introduced in notebook 08_gpt).

A GPT keeps only the decoder's masked self-attention: no encoder, no cross-attention. It
reads tokens x_0 .. x_{T-1} and predicts, at every position t, the next token x_{t+1}: the
targets are the inputs shifted by one, and the causal mask keeps position t from seeing
what it must predict. Generation then appends one predicted token at a time.

The layout is GPT-2's:
- token embeddings plus learned position embeddings (notebook 03), dropout;
- ``n_layer`` pre-LN blocks: x = x + attn(ln1(x)); x = x + ff(ln2(x)), with a GELU
  feed-forward network 4 * d_model wide (notebook 04);
- a final LayerNorm and the output projection, tied to the token embedding matrix.

Because of the causal mask, the keys and values of earlier positions never change as the
text grows. ``forward(idx, past)`` therefore takes the keys and values of the tokens seen
so far and returns them extended: generating a token then costs one position's work
instead of the whole prefix's (the KV cache).

``GPT.from_gpt2`` loads the weights of a Hugging Face ``GPT2LMHeadModel``; ``train`` and its
helpers train a model on one long token sequence (a character-level corpus in notebook 08).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import scaled_dot_product_attention
from .encoder import FeedForward, LayerNorm
from .multihead import MultiHeadAttention, merge_heads, split_heads
from .positional import LearnedPositionalEmbedding
from .training import History, autocast

# transformers' names of GPT-2's activation -> FeedForward's
_GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
KV = tuple[Tensor, Tensor]  # one layer's keys and values, each (batch, heads, seq, d_head)


@dataclass
class GPTConfig:
    """The sizes of a GPT (introduced in notebook 08_gpt). The defaults are the notebook's
    character model; GPT-2 small is ``GPTConfig(50257, 1024, 12, 12, 768)``."""

    vocab_size: int
    block_size: int = 64      # the context: the most positions the model has embeddings for
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    fast: bool = True         # fused kernels: F.scaled_dot_product_attention, torch's LayerNorm
    activation: str = "gelu"  # "gelu_tanh" for GPT-2's weights


def layer_norm(config: GPTConfig) -> nn.Module:
    """Notebook 04's LayerNorm, or torch's fused one (same parameters and results) when ``config.fast``."""
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
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (batch, T, d_model={self.d_model}), got {tuple(x.shape)}")
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
    """A pre-LN decoder block without cross-attention (introduced in notebook 08_gpt):
    x = x + dropout(attn(ln1(x))); x = x + dropout(ff(ln2(x)))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln1 = layer_norm(config)
        self.attn = CausalSelfAttention(d, config.n_head, config.dropout, config.bias, config.fast)
        self.ln2 = layer_norm(config)
        self.ff = FeedForward(d, 4 * d, config.dropout, activation=config.activation)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, past: KV | None = None) -> tuple[Tensor, KV]:
        """x: (batch, T, d_model) -> (batch, T, d_model), and this layer's keys and values."""
        attended, present = self.attn(self.ln1(x), past)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.ln2(x))), present


class GPT(nn.Module):
    """A decoder-only language model (introduced in notebook 08_gpt).

    ``forward(idx, past=None)`` -> (logits, present): idx (batch, T) token ids; logits
    (batch, T, vocab_size), row t scoring the token that follows idx[:, t]; present, one
    (keys, values) pair per layer covering every position so far, to pass back as ``past``
    with the next tokens.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = LearnedPositionalEmbedding(config.block_size, config.d_model, config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = layer_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok.weight  # weight tying: one (vocab, d_model) matrix
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization: N(0, 0.02) for weights, zero biases, and the projections that
        write into the residual stream (w_o, linear2) scaled by 1/sqrt(2 * n_layer), so that the
        stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for linear in (block.attn.w_o, block.ff.linear2):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def num_parameters(self, embeddings: bool = True) -> int:
        """Number of parameters (the tied matrix counted once); without the position embeddings
        when ``embeddings`` is False."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.pos.embedding.weight.numel()

    def forward(self, idx: Tensor, past: list[KV] | None = None) -> tuple[Tensor, list[KV]]:
        if idx.dim() != 2 or idx.is_floating_point():
            raise ValueError(f"idx must be token ids of shape (batch, T), got {tuple(idx.shape)} {idx.dtype}")
        start = 0 if past is None else past[0][0].shape[2]
        if start + idx.shape[1] > self.config.block_size:
            raise ValueError(f"{start} cached + {idx.shape[1]} new positions exceed block_size="
                             f"{self.config.block_size}: crop the input to the last block_size tokens")
        positions = torch.arange(start, start + idx.shape[1], device=idx.device)
        x = self.pos.dropout(self.tok(idx) + self.pos.embedding(positions))
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            present.append(kv)
        return self.lm_head(self.ln_f(x)), present

    @classmethod
    def from_gpt2(cls, hf_model: nn.Module, fast: bool = True) -> "GPT":
        """A GPT with the weights of a Hugging Face ``GPT2LMHeadModel`` (introduced in notebook 08_gpt).

        GPT-2 stores its projections as ``Conv1D`` with (in, out) weights, the transpose of
        nn.Linear's, and packs W_q, W_k, W_v into one ``c_attn``. GPT-2 was trained with the
        tanh approximation of GELU ("gelu_new"), which the model takes over from the config.
        The model gets the weights' dtype.
        """
        hf = hf_model.config
        if hf.activation_function not in _GPT2_ACTIVATIONS:
            raise ValueError(f"activation_function must be one of {sorted(_GPT2_ACTIVATIONS)}, "
                             f"got {hf.activation_function!r}")
        config = GPTConfig(vocab_size=hf.vocab_size, block_size=hf.n_positions, n_layer=hf.n_layer,
                           n_head=hf.n_head, d_model=hf.n_embd, dropout=0.0,
                           layer_norm_eps=hf.layer_norm_epsilon, fast=fast,
                           activation=_GPT2_ACTIVATIONS[hf.activation_function])
        sd = hf_model.state_dict()
        model = cls(config).to(sd["transformer.wte.weight"].dtype)
        with torch.no_grad():
            model.tok.weight.copy_(sd["transformer.wte.weight"])
            model.pos.embedding.weight.copy_(sd["transformer.wpe.weight"])
            model.ln_f.load_state_dict({"weight": sd["transformer.ln_f.weight"], "bias": sd["transformer.ln_f.bias"]})
            for i, block in enumerate(model.blocks):
                p = f"transformer.h.{i}."
                block.ln1.load_state_dict({"weight": sd[p + "ln_1.weight"], "bias": sd[p + "ln_1.bias"]})
                block.ln2.load_state_dict({"weight": sd[p + "ln_2.weight"], "bias": sd[p + "ln_2.bias"]})
                qkv_w, qkv_b = sd[p + "attn.c_attn.weight"].t().chunk(3), sd[p + "attn.c_attn.bias"].chunk(3)
                for linear, w, b in zip((block.attn.w_q, block.attn.w_k, block.attn.w_v), qkv_w, qkv_b):
                    linear.weight.copy_(w)
                    linear.bias.copy_(b)
                for linear, name in ((block.attn.w_o, "attn.c_proj"), (block.ff.linear1, "mlp.c_fc"),
                                     (block.ff.linear2, "mlp.c_proj")):
                    linear.weight.copy_(sd[p + name + ".weight"].t())
                    linear.bias.copy_(sd[p + name + ".bias"])
        return model


# --- training on one long token sequence ------------------------------------------------

def get_batch(data: Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random windows of a token sequence and their targets (introduced in notebook 08_gpt).

    data: (N,) token ids. Returns x, y of shape (batch_size, block_size) with
    y[:, t] = x[:, t + 1] wherever both are in the window: the targets are the inputs
    shifted by one.
    """
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[starts.unsqueeze(1) + offsets]  # (batch, block_size + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats per token: logits (batch, T, V), targets (batch, T)
    (introduced in notebook 08_gpt). Divide by ln 2 for bits per token."""
    # bf16 logits (autocast) are scored in float32; float64 stays float64
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@torch.no_grad()
def evaluate(model: GPT, data: Tensor, batch_size: int = 64, max_batches: int | None = None,
             amp: bool = False) -> float:
    """Mean loss per token over consecutive, non-overlapping windows of ``data``, in eval mode
    (introduced in notebook 08_gpt). ``max_batches`` evaluates the first batches only
    (evenly spread over ``data``), to save time during training."""
    device, block = next(model.parameters()).device, model.config.block_size
    n_windows = (len(data) - 1) // block
    starts = torch.arange(n_windows) * block
    if max_batches is not None and n_windows > max_batches * batch_size:
        starts = starts[torch.linspace(0, n_windows - 1, max_batches * batch_size).long()]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for chunk in starts.split(batch_size):
        windows = data[chunk.unsqueeze(1) + torch.arange(block + 1)].to(device)
        with autocast(device, amp):
            logits, _ = model(windows[:, :-1])
        total += lm_loss(logits, windows[:, 1:]).item() * chunk.numel()
        count += chunk.numel()
    model.train(was_training)
    return total / count


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.1) -> float:
    """Learning-rate factor at ``step`` (from 0) of ``total`` (introduced in notebook 08_gpt):
    linear warmup over ``warmup`` steps to 1, then a cosine down to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train(model: GPT, train_data: Tensor, val_data: Tensor, *, steps: int, batch_size: int = 12,
          lr: float = 2e-3, warmup: int = 50, weight_decay: float = 0.1, max_norm: float | None = 1.0,
          max_seconds: float | None = None, eval_every: int = 200, eval_batches: int = 8,
          amp: bool = False, seed: int = 0, progress: bool = True,
          on_eval: Callable[[int, float], None] | None = None) -> History:
    """Train a GPT on random windows of ``train_data`` (introduced in notebook 08_gpt).

    AdamW (betas 0.9, 0.99; weight decay on the matrices, embeddings included, not on biases
    and LayerNorm gains), the ``warmup_cosine`` schedule over ``steps``, gradient
    clipping to ``max_norm``, bf16 autocast on CUDA when ``amp``. ``max_seconds`` stops early,
    validation excluded; the schedule then ends early too: after 5 and 10 steps and every 20
    steps it is fitted to the number of steps the time allows at the speed so far. Every
    ``eval_every`` steps and at the end the validation loss on ``eval_batches`` batches is
    recorded and passed to ``on_eval(step, loss)``. Returns training.History (accuracy fields
    unused).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.99), fused=True)
    generator = torch.Generator().manual_seed(seed)
    history, total = History(), steps
    bar = tqdm(total=steps, disable=not progress, desc="training", unit="step", mininterval=0.5)
    start = time.perf_counter()
    eval_seconds = 0.0

    def validate(step: int) -> None:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        loss = evaluate(model, val_data, max_batches=eval_batches, amp=amp)
        eval_seconds += time.perf_counter() - t0
        history.val_step.append(step)
        history.val_loss.append(loss)
        if on_eval is not None:
            on_eval(step, loss)

    model.train()
    try:
        for step in range(steps):
            factor = warmup_cosine(step, total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            x, y = get_batch(train_data, model.config.block_size, batch_size, generator)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                logits, _ = model(x)
            loss = lm_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            history.step.append(step + 1)
            history.train_loss.append(loss.item())
            history.lr.append(lr * factor)
            bar.update()
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", refresh=False)
            if (step + 1) % eval_every == 0 and step + 1 < total:
                validate(step + 1)
            if max_seconds is not None:
                elapsed = time.perf_counter() - start - eval_seconds
                # fit the schedule into the time, at the speed so far
                if step + 1 in (5, 10) or (step + 1) % 20 == 0:
                    total = bar.total = min(steps, int((step + 1) * max_seconds / elapsed))
                if step + 1 >= total or elapsed >= max_seconds:
                    break
        validate(history.steps)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
    return history
