"""The Transformer encoder (introduced in notebook 04_encoder).

An encoder layer is two sub-layers applied one after the other: multi-head
self-attention, then a position-wise feed-forward network. Each is wrapped in a
residual connection and a layer normalization, either after the residual sum
(post-LN, the original paper) or before the sub-layer (pre-LN, more stable when deep).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .multihead import MultiHeadAttention, copy_torch_attention
from .validation import check_choice, check_int, check_number, check_tensor, check_type

# "gelu_tanh": the tanh approximation of GELU that GPT-2 was trained with (notebook 08).
_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


class FeedForward(nn.Module):
    """Position-wise feed-forward network: linear2(dropout(act(linear1(x)))).

    The same two-layer MLP is applied to every position independently
    (introduced in notebook 04_encoder). Laid out as in torch.nn.TransformerEncoderLayer
    (``linear1``, ``dropout``, ``linear2``) so that weights copy across.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        check_int("d_model", d_model, low=1)
        check_int("d_ff", d_ff, low=1)
        check_number("dropout", dropout, 0.0, 1.0)
        check_choice("activation", activation, sorted(_ACTIVATIONS))
        self.d_model, self.activation = d_model, activation
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model)."""
        check_tensor("x", x, "batch seq d_model", "float", d_model=self.d_model)
        return self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x))))


class LayerNorm(nn.Module):
    """Layer normalization over the last (feature) dimension, written out (introduced in notebook 05_decoder).

    Each position is normalized on its own, to mean 0 and variance 1 over its d_model
    features (biased variance, eps inside the square root), then scaled by ``weight`` and
    shifted by ``bias``. Parameter names match torch.nn.LayerNorm so state dicts load.
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        check_int("d_model", d_model, low=1)
        check_number("eps", eps, 0.0, low_open=True)
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        check_tensor("x", x, "... d_model", "float", d_model=self.d_model)
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).square().mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each with a residual connection and LayerNorm.

    Post-LN (``norm_first=False``, the original paper):
        x = norm1(x + dropout1(self_attn(x)));  x = norm2(x + dropout2(ff(x)))
    Pre-LN (``norm_first=True``):
        x = x + dropout1(self_attn(norm1(x)));  x = x + dropout2(ff(norm2(x)))
    Equal to torch.nn.TransformerEncoderLayer(batch_first=True) with the same weights
    (introduced in notebook 04_encoder).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 fast: bool = False) -> None:
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fast=fast)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        self.norm2 = LayerNorm(d_model, layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (batch, seq, d_model); mask: bool, True = may attend, broadcastable to
        (batch, seq, seq), e.g. padding_mask's (batch, 1, seq). Returns (batch, seq, d_model)."""
        check_tensor("x", x, "batch seq d_model", "float", d_model=self.d_model)
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=mask)[0])
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask)[0]))
        return self.norm2(x + self.dropout2(self.ff(x)))


class Encoder(nn.Module):
    """A stack of ``num_layers`` encoder layers (introduced in notebook 04_encoder).

    A pre-LN stack ends with a final LayerNorm (``norm``): its residual stream is never
    normalized inside the layers. A post-LN stack's last layer already normalizes, so
    ``norm`` is None. Equal to torch.nn.TransformerEncoder with the same weights.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 fast: bool = False) -> None:
        super().__init__()
        check_int("num_layers", num_layers, low=1)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first, activation, layer_norm_eps, fast)
            for _ in range(num_layers))
        self.norm = LayerNorm(d_model, layer_norm_eps) if norm_first else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (batch, seq, d_model); mask as in EncoderLayer. Returns (batch, seq, d_model)."""
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)


def copy_torch_encoder_layer(torch_layer: nn.TransformerEncoderLayer, layer: nn.Module) -> None:
    """Copy the weights of a torch.nn.TransformerEncoderLayer into ``layer`` (introduced in notebook 04_encoder).

    ``layer`` needs our attribute names (``self_attn.w_q`` ..., ``ff.linear1``, ``norm1`` ...).
    PyTorch packs W_q, W_k, W_v into one ``in_proj_weight`` of shape (3 * d_model, d_model).
    """
    check_type("torch_layer", torch_layer, nn.TransformerEncoderLayer)
    check_type("layer", layer, nn.Module)
    copy_torch_attention(torch_layer.self_attn, layer.self_attn)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(layer.ff, name).load_state_dict(getattr(torch_layer, name).state_dict())
        for name in ("norm1", "norm2"):
            getattr(layer, name).load_state_dict(getattr(torch_layer, name).state_dict())
