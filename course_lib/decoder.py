"""The Transformer decoder and the whole encoder-decoder model (introduced in notebook 05_decoder).

A decoder layer has three sub-layers, applied one after the other: masked (causal)
self-attention over the target so far, cross-attention whose queries come from the
decoder and whose keys and values come from the encoder's output (``memory``), and the
position-wise feed-forward network. Each is wrapped in a residual connection and a
LayerNorm, after the sum (post-LN, the paper) or before the sub-layer (pre-LN).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import causal_mask, padding_mask
from .encoder import Encoder, FeedForward, LayerNorm
from .multihead import MultiHeadAttention, copy_torch_attention
from .positional import SinusoidalPositionalEncoding, TokenEmbedding
from .validation import check, check_int, check_mask, check_tensor, check_token_ids, check_type


def target_mask(tgt: Tensor, pad_id: int) -> Tensor:
    """The decoder's self-attention mask (introduced in notebook 05_decoder).

    tgt: (batch, tgt) token ids. Returns (batch, tgt, tgt) bool, True = may attend: query t
    sees the keys 0..t (causal) that are not padding.
    """
    check_tensor("tgt", tgt, "batch tgt", "integer")
    return padding_mask(tgt, pad_id) & causal_mask(tgt.shape[1], device=tgt.device)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention, feed-forward; each with a residual and LayerNorm.

    Post-LN (``norm_first=False``, the paper):
        x = norm1(x + dropout1(self_attn(x, tgt_mask)))
        x = norm2(x + dropout2(cross_attn(x, memory, memory_mask)))
        x = norm3(x + dropout3(ff(x)))
    Pre-LN (``norm_first=True``): x = x + dropout_i(sublayer_i(norm_i(x))), same order.
    Equal to torch.nn.TransformerDecoderLayer(batch_first=True) with the same weights
    (introduced in notebook 05_decoder).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 fast: bool = False) -> None:
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fast=fast)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout, fast=fast)
        self.ff = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        self.norm2 = LayerNorm(d_model, layer_norm_eps)
        self.norm3 = LayerNorm(d_model, layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        """x: (batch, tgt, d_model), the target so far; memory: (batch, src, d_model), the encoder output.

        tgt_mask: bool, True = may attend, broadcastable to (batch, tgt, tgt): causal, usually
        with the target's padding (see ``target_mask``). memory_mask: broadcastable to
        (batch, tgt, src), usually the source's padding mask (batch, 1, src).
        Returns (batch, tgt, d_model).
        """
        _check_decoder_inputs(x, memory, self.d_model)
        heads = self.self_attn.num_heads
        if tgt_mask is not None:
            check_mask(tgt_mask, x.shape[1], x.shape[1], (x.shape[0],), heads, name="tgt_mask")
        if memory_mask is not None:
            check_mask(memory_mask, x.shape[1], memory.shape[1], (x.shape[0],), heads, name="memory_mask")
        if self.norm_first:
            x = x + self._self_block(self.norm1(x), tgt_mask)
            x = x + self._cross_block(self.norm2(x), memory, memory_mask)
            return x + self.dropout3(self.ff(self.norm3(x)))
        x = self.norm1(x + self._self_block(x, tgt_mask))
        x = self.norm2(x + self._cross_block(x, memory, memory_mask))
        return self.norm3(x + self.dropout3(self.ff(x)))

    def _self_block(self, x: Tensor, tgt_mask: Tensor | None) -> Tensor:
        return self.dropout1(self.self_attn(x, mask=tgt_mask)[0])

    def _cross_block(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None) -> Tensor:
        # The decoder asks (queries); the source sentence answers (keys and values).
        return self.dropout2(self.cross_attn(x, memory, memory, mask=memory_mask)[0])


def _check_decoder_inputs(x: Tensor, memory: Tensor, d_model: int) -> None:
    check_tensor("x", x, "batch tgt d_model", "float", d_model=d_model)
    check_tensor("memory", memory, "batch src d_model", "float", batch=x.shape[0], d_model=d_model)


class Decoder(nn.Module):
    """A stack of ``num_layers`` decoder layers, each attending to the same ``memory``
    (introduced in notebook 05_decoder).

    Every layer's cross-attention reads the encoder's final output, not the matching
    encoder layer. As in ``Encoder``, a pre-LN stack ends with a final LayerNorm (``norm``),
    a post-LN stack has ``norm = None``. Equal to torch.nn.TransformerDecoder with the same weights.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 fast: bool = False) -> None:
        super().__init__()
        check_int("num_layers", num_layers, low=1)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, d_ff, dropout, norm_first, activation, layer_norm_eps, fast)
            for _ in range(num_layers))
        self.norm = LayerNorm(d_model, layer_norm_eps) if norm_first else None

    def forward(self, x: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        """x: (batch, tgt, d_model), memory: (batch, src, d_model), masks as in DecoderLayer.
        Returns (batch, tgt, d_model)."""
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return x if self.norm is None else self.norm(x)


class Transformer(nn.Module):
    """The encoder-decoder Transformer of "Attention Is All You Need" (introduced in notebook 05_decoder).

    tokens -> TokenEmbedding (x sqrt(d_model)) -> + sinusoidal positions -> Encoder -> memory;
    target tokens -> embedding -> + positions -> Decoder (attending to memory) -> ``generator``,
    a linear map to one logit per target-vocabulary token. With ``tie_weights`` the generator
    uses the target embedding matrix as its weight (one tensor, (tgt_vocab, d_model)): a
    token's input vector is also the vector its output logit is scored against. With
    ``share_embeddings`` (one vocabulary for both languages, e.g. a shared BPE) the source
    embedding is that same matrix too, as in the paper (section 3.4).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 512, num_heads: int = 8,
                 num_encoder_layers: int = 6, num_decoder_layers: int = 6, d_ff: int = 2048,
                 dropout: float = 0.1, max_len: int = 5000, norm_first: bool = False,
                 tie_weights: bool = True, fast: bool = False, share_embeddings: bool = False) -> None:
        super().__init__()
        check_int("src_vocab_size", src_vocab_size, low=1)
        check_int("tgt_vocab_size", tgt_vocab_size, low=1)
        check(not share_embeddings or src_vocab_size == tgt_vocab_size, "src_vocab_size",
              f"equal to tgt_vocab_size ({tgt_vocab_size}) when share_embeddings=True (one shared vocabulary)",
              src_vocab_size)
        self.src_embed = TokenEmbedding(src_vocab_size, d_model)
        self.tgt_embed = TokenEmbedding(tgt_vocab_size, d_model)
        self.pos = SinusoidalPositionalEncoding(d_model, max_len, dropout)
        self.encoder = Encoder(num_encoder_layers, d_model, num_heads, d_ff, dropout, norm_first, fast=fast)
        self.decoder = Decoder(num_decoder_layers, d_model, num_heads, d_ff, dropout, norm_first, fast=fast)
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        self.reset_parameters()
        if tie_weights:
            self.generator.weight = self.tgt_embed.embedding.weight
        if share_embeddings:
            self.src_embed.embedding.weight = self.tgt_embed.embedding.weight

    def reset_parameters(self) -> None:
        """Xavier-uniform for every weight matrix of the encoder and decoder stacks.

        The paper does not state its initialization; this is the one of torch.nn.Transformer
        and of the reference implementations. The embeddings keep TokenEmbedding's
        N(0, 1/d_model), the scale a tied output projection needs.
        """
        for stack in (self.encoder, self.decoder):
            for p in stack.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src: (batch, src) token ids; src_mask: (batch, 1, src) padding mask, True = real token.
        Returns memory (batch, src, d_model)."""
        check_token_ids("src", src, self.src_embed.embedding.num_embeddings, "batch src")
        return self.encoder(self.pos(self.src_embed(src)), src_mask)

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               tgt_mask: Tensor | None = None) -> Tensor:
        """tgt: (batch, tgt) token ids; memory: (batch, src, d_model); src_mask masks the padded
        memory positions; tgt_mask (batch, tgt, tgt), usually ``target_mask``. Returns the hidden
        states (batch, tgt, d_model), before the generator."""
        check_token_ids("tgt", tgt, self.tgt_embed.embedding.num_embeddings, "batch tgt")
        return self.decoder(self.pos(self.tgt_embed(tgt)), memory, tgt_mask, src_mask)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        """src: (batch, src), tgt: (batch, tgt) token ids; masks as in encode / decode.
        Returns logits (batch, tgt, tgt_vocab): position t scores the token that follows tgt[:, :t+1]."""
        check_tensor("src", src, "batch src", "index")
        check_tensor("tgt", tgt, "batch tgt", "index", batch=src.shape[0])
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


def copy_torch_decoder_layer(torch_layer: nn.TransformerDecoderLayer, layer: nn.Module) -> None:
    """Copy the weights of a torch.nn.TransformerDecoderLayer into ``layer`` (introduced in notebook 05_decoder).

    ``layer`` needs our attribute names (``self_attn.w_q`` ..., ``cross_attn``, ``ff.linear1``,
    ``norm1`` ...). PyTorch calls the cross-attention ``multihead_attn`` and packs W_q, W_k, W_v
    into one ``in_proj_weight`` of shape (3 * d_model, d_model).
    """
    check_type("torch_layer", torch_layer, nn.TransformerDecoderLayer)
    check_type("layer", layer, nn.Module)
    copy_torch_attention(torch_layer.self_attn, layer.self_attn)
    copy_torch_attention(torch_layer.multihead_attn, layer.cross_attn)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(layer.ff, name).load_state_dict(getattr(torch_layer, name).state_dict())
        for name in ("norm1", "norm2", "norm3"):
            getattr(layer, name).load_state_dict(getattr(torch_layer, name).state_dict())
