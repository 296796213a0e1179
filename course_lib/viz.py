"""Plots shared by the notebooks: attention heatmaps and curves (introduced in notebook 01_attention)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch


def plot_attention(weights: torch.Tensor, queries: Sequence[str], keys: Sequence[str] | None = None,
                   title: str = "", ax: plt.Axes | None = None) -> plt.Axes:
    """Heatmap of one attention matrix (seq_q, seq_k): rows are queries, columns keys."""
    keys = queries if keys is None else keys
    weights = weights.detach().float().cpu()
    if weights.shape != (len(queries), len(keys)):
        raise ValueError(f"weights should be (seq_q={len(queries)}, seq_k={len(keys)}), "
                         f"got {tuple(weights.shape)}")
    ax = ax or plt.subplots(figsize=(0.5 * len(keys) + 2, 0.5 * len(queries) + 1))[1]
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right")
    ax.set_yticks(range(len(queries)), queries)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    return ax


def plot_heads(weights: torch.Tensor, tokens: Sequence[str], title: str = "") -> plt.Figure:
    """One heatmap per head of (num_heads, seq, seq) self-attention weights, with a shared colour bar."""
    weights = weights.detach().float().cpu()
    if weights.dim() != 3 or weights.shape[1:] != (len(tokens), len(tokens)):
        raise ValueError(f"weights should be (num_heads, seq={len(tokens)}, seq={len(tokens)}), "
                         f"got {tuple(weights.shape)}")
    num_heads = weights.shape[0]
    fig, axes = plt.subplots(1, num_heads, figsize=(3.2 * num_heads + 0.8, 3.6), squeeze=False,
                             constrained_layout=True)
    for h, ax in enumerate(axes[0]):
        image = ax.imshow(weights[h], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if h == 0 else [""] * len(tokens), fontsize=7)
        ax.set_xlabel("key (attended to)")
        ax.set_title(f"head {h}")
    axes[0, 0].set_ylabel("query (attending)")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.046, label="attention weight")
    fig.suptitle(title)
    return fig


def plot_layer_heads(weights: torch.Tensor, queries: Sequence[str], keys: Sequence[str] | None = None,
                     title: str = "", panel: float | None = None) -> plt.Figure:
    """A grid of heatmaps, one row per layer and one column per head, of (layers, heads, seq_q,
    seq_k) attention weights (``course_lib.attention_maps.layer_head_grid`` gives them), with a
    shared colour bar; ``panel``: inches per heatmap (default from the length), smaller for
    a pretrained model's many heads (introduced in notebook 06_training)."""
    keys = queries if keys is None else keys
    weights = weights.detach().float().cpu()
    if weights.dim() != 4 or weights.shape[2:] != (len(queries), len(keys)):
        raise ValueError(f"weights should be (layers, heads, seq_q={len(queries)}, seq_k={len(keys)}), "
                         f"got {tuple(weights.shape)}")
    layers, heads = weights.shape[:2]
    size = panel or 0.17 * max(len(queries), len(keys)) + 1.0
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads + 1.0, size * layers + 0.6), squeeze=False,
                             constrained_layout=True)
    for (layer, head), ax in zip([(i, j) for i in range(layers) for j in range(heads)], axes.flat):
        image = ax.imshow(weights[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(keys)), keys if layer == layers - 1 else [""] * len(keys), rotation=90, fontsize=6)
        ax.set_yticks(range(len(queries)), queries if head == 0 else [""] * len(queries), fontsize=6)
        ax.set_title(f"layer {layer}, head {head}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("key (attended to)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("query (attending)", fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, label="attention weight")
    fig.suptitle(title)
    return fig


# --- notebook 03_positional_encoding ---------------------------------------------------

def plot_positional_encoding(pe: torch.Tensor, title: str = "", ax: plt.Axes | None = None) -> plt.Axes:
    """Heatmap of a (max_len, d_model) position table: one row per position, one column per dimension."""
    pe = pe.detach().float().cpu()
    if pe.dim() != 2:
        raise ValueError(f"pe should be (max_len, d_model), got {tuple(pe.shape)}")
    ax = ax or plt.subplots(figsize=(8, 4))[1]
    limit = pe.abs().max().item()
    image = ax.imshow(pe, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    return ax


def plot_encoding_dimensions(pe: torch.Tensor, dims: Sequence[int], title: str = "",
                             ax: plt.Axes | None = None) -> plt.Axes:
    """Columns ``dims`` of a (max_len, d_model) position table as curves over the positions."""
    pe = pe.detach().float().cpu()
    ax = ax or plt.subplots(figsize=(8, 3))[1]
    for d in dims:
        ax.plot(pe[:, d], label=f"dim {d}")
    ax.set_xlabel("position")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return ax


# --- notebook 06_training --------------------------------------------------------------

def plot_history(history, title: str = "") -> plt.Figure:
    """Training curves from a ``course_lib.training.History``: loss and token accuracy per step
    (training loss smoothed over a moving window, validation points at each evaluation) and the
    learning rate (introduced in notebook 06_training)."""
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(13, 3.4))
    window = max(1, len(history.step) // 50)
    for ax, train, val, name in ((ax_loss, history.train_loss, history.val_loss, "loss"),
                                 (ax_acc, history.train_acc, history.val_acc, "token accuracy")):
        smooth = torch.tensor(train, dtype=torch.float64)
        if window > 1 and len(smooth) >= window:  # a moving average: single batches are noisy
            smooth = smooth.unfold(0, window, 1).mean(-1)
        ax.plot(history.step[len(history.step) - len(smooth):], smooth, label="training")
        if val:
            ax.plot(history.val_step, val, "o-", label="validation")
        ax.set(xlabel="step", title=name)
        ax.legend()
    ax_lr.plot(history.step, history.lr)
    ax_lr.set(xlabel="step", title="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_schedules(schedules: dict[str, Sequence[float]], title: str = "", ax: plt.Axes | None = None) -> plt.Axes:
    """Learning rate against step for several schedules, {label: [lr at step 1, 2, ...]}
    (introduced in notebook 06_training)."""
    ax = ax or plt.subplots(figsize=(7, 3.4))[1]
    for label, rates in schedules.items():
        ax.plot(range(1, len(rates) + 1), rates, label=label)
    ax.set(xlabel="step", ylabel="learning rate", title=title)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend()
    return ax


# --- the architecture figures (notebooks 01-08) ------------------------------------------
# Each function draws one diagram with the shapes its notebook uses; ``write_figures`` saves
# them as PNG beside the notebooks (``make figures``), where the markdown cells show them and
# nbgrader releases them with the notebook.

_COLOURS = {"input": "#dbe9f6", "op": "#fde9c9", "attn": "#f9d0c4", "norm": "#e2f0d9", "out": "#e8e0f0",
            "loss": "#f4cccc"}


def _box(ax: plt.Axes, x: float, y: float, text: str, kind: str = "op", shape: str = "",
         width: float = 3.2, height: float = 0.62) -> tuple[float, float, float, float]:
    """A rounded box centred at (x, y) with its text and, below the text, a shape in grey."""
    from matplotlib.patches import FancyBboxPatch
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=_COLOURS[kind], edgecolor="#555555", linewidth=1))
    if shape:
        ax.text(x, y + 0.11, text, ha="center", va="center", fontsize=9.5)
        ax.text(x, y - 0.16, shape, ha="center", va="center", fontsize=8, color="#555555", family="monospace")
    else:
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5)
    return x, y, width, height


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           curve: float = 0.0) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color="#333333", lw=1.1, connectionstyle=f"arc3,rad={curve}"))
    if text and abs(end[0] - start[0]) > abs(end[1] - start[1]):  # a horizontal arrow: its label above it
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.15, text, fontsize=8, color="#333333",
                ha="center")
    elif text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=8, color="#333333",
                va="center")


def _canvas(width: float, height: float, title: str) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width * 1.25)
    ax.set_ylim(0, height * 1.25)
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    return fig, ax


def _chain(ax: plt.Axes, x: float, top: float, steps: list[tuple[str, str, str]], gap: float = 0.95,
           width: float = 3.2) -> list:
    """Boxes (text, kind, shape) from top to bottom, each joined to the next by an arrow."""
    boxes = [_box(ax, x, top - i * gap, text, kind, shape, width) for i, (text, kind, shape) in enumerate(steps)]
    for (x0, y0, _, h0), (x1, y1, _, h1) in zip(boxes, boxes[1:]):
        _arrow(ax, (x0, y0 - h0 / 2 - 0.05), (x1, y1 + h1 / 2 + 0.05))
    return boxes


def figure_attention() -> plt.Figure:
    """Scaled dot-product attention with notebook 01's shapes (drawn for notebook 01_attention)."""
    fig, ax = _canvas(6.4, 6.4, "Scaled dot-product attention")
    q, k, v = (_box(ax, x, 7.3, name, "input", shape, width=2.3)
               for x, name, shape in [(1.6, "Q", "(..., seq_q, d_k)"), (4.1, "K", "(..., seq_k, d_k)"),
                                      (6.6, "V", "(..., seq_k, d_v)")])
    steps = _chain(ax, 2.85, 6.1, [("scores  Q Kᵀ", "op", "(..., seq_q, seq_k)"),
                                   ("÷ √d_k", "op", "keeps the softmax unsaturated"),
                                   ("mask: False → −∞", "op", "padding, the future"),
                                   ("softmax over the keys", "attn", "weights: each row sums to 1"),
                                   ("weights @ V", "op", "a matrix product, not *")], gap=1.05)
    _box(ax, 2.85, 0.75, "output", "out", "(..., seq_q, d_v)")
    _arrow(ax, (2.85, steps[-1][1] - 0.36), (2.85, 1.11))
    _arrow(ax, (q[0], q[1] - 0.36), (2.4, 6.46))
    _arrow(ax, (k[0], k[1] - 0.36), (3.4, 6.46), "Kᵀ")
    _arrow(ax, (v[0], v[1] - 0.36), (4.3, steps[-1][1] + 0.1), "", curve=-0.25)
    return fig


def figure_multihead() -> plt.Figure:
    """Multi-head attention: split, attend per head, merge, W^O (drawn for notebook 02_multi_head_attention)."""
    fig, ax = _canvas(6.4, 7.0, "Multi-head attention (d_model = heads × d_head)")
    _chain(ax, 4.0, 8.1, [("x (query; key, value: x or memory)", "input", "(batch, seq, d_model)"),
                          ("W^Q, W^K, W^V: three nn.Linear", "op", "(batch, seq, d_model) each"),
                          ("split_heads: reshape, transpose(1, 2)", "op", "(batch, heads, seq, d_head)"),
                          ("attention in every head at once", "attn", "weights (batch, heads, seq_q, seq_k)"),
                          ("per-head outputs", "op", "(batch, heads, seq_q, d_head)"),
                          ("merge_heads: transpose(1, 2), reshape", "op", "(batch, seq_q, d_model)"),
                          ("W^O mixes the heads", "op", "(batch, seq_q, d_model)"),
                          ("output", "out", "(batch, seq_q, d_model)")], gap=1.05)
    for i, label in enumerate(("head 1", "head 2", "⋮", "head h")):  # one label per line, none on another
        ax.text(6.35, 5.3 - 0.25 * i, label, fontsize=7, color="#993333", va="center")
    return fig


def _residual(ax: plt.Axes, x: float, top: float, bottom: float, label: str = "residual") -> None:
    ax.annotate("", xy=(x + 1.65, bottom), xytext=(x + 1.65, top),
                arrowprops=dict(arrowstyle="-|>", color="#2a6f97", lw=1.1, connectionstyle="arc3,rad=-0.35"))
    ax.text(x + 2.2, (top + bottom) / 2, label, fontsize=8, color="#2a6f97", va="center")


def figure_encoder_layer() -> plt.Figure:
    """The post-LN encoder layer of the paper, with its shapes (drawn for notebook 04_encoder)."""
    fig, ax = _canvas(6.0, 7.4, "Encoder layer (post-LN, as in the paper)")
    x = 3.3
    b = _chain(ax, x, 8.6, [("x", "input", "(batch, seq, d_model)"),
                            ("multi-head self-attention", "attn", "mask: padding (batch, 1, seq)"),
                            ("dropout, then + x", "op", ""),
                            ("LayerNorm₁ → h", "norm", "(batch, seq, d_model)"),
                            ("feed-forward, per position", "op", "d_model → d_ff → d_model, ReLU"),
                            ("dropout, then + h", "op", ""),
                            ("LayerNorm₂", "norm", "(batch, seq, d_model)"),
                            ("output: the next layer's x", "out", "× num_layers (the paper's N = 6)")])
    _residual(ax, x, b[0][1], b[2][1])
    _residual(ax, x, b[3][1], b[5][1])
    return fig


def figure_decoder() -> plt.Figure:
    """The decoder layer and the whole encoder-decoder Transformer (drawn for notebook 05_decoder)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 7.4))
    for ax in axes:
        ax.set_xlim(0, 7.5)
        ax.set_ylim(0, 9.3)
        ax.axis("off")
    ax = axes[0]
    ax.set_title("Decoder layer", fontsize=11)
    b = _chain(ax, 3.9, 8.6, [("y", "input", "(batch, tgt, d_model)"),
                              ("masked self-attention", "attn", "causal mask (tgt, tgt)"),
                              ("dropout, + y, LayerNorm₁", "norm", ""),
                              ("cross-attention", "attn", "Q: decoder; K, V: memory"),
                              ("dropout, + , LayerNorm₂", "norm", "weights (batch, heads, tgt, src)"),
                              ("feed-forward", "op", "d_model → d_ff → d_model"),
                              ("dropout, + , LayerNorm₃", "norm", ""),
                              ("output", "out", "(batch, tgt, d_model)")], gap=1.05)
    _box(ax, 1.0, b[3][1] + 0.9, "memory", "input", "(batch, src, d_model)", width=1.9)
    _arrow(ax, (1.0, b[3][1] + 0.55), (2.25, b[3][1]))
    _residual(ax, 3.9, b[0][1], b[2][1])
    _residual(ax, 3.9, b[2][1], b[4][1])
    _residual(ax, 3.9, b[4][1], b[6][1])
    ax = axes[1]
    ax.set_title("The whole Transformer", fontsize=11)
    enc = _chain(ax, 1.8, 8.6, [("src ids", "input", "(batch, src)"),
                                ("embed × √d_model + PE", "op", "(batch, src, d_model)"),
                                ("encoder: N layers", "attn", "padding mask"),
                                ("memory", "out", "(batch, src, d_model)")], gap=1.3)
    dec = _chain(ax, 5.6, 8.6, [("tgt ids (shifted right)", "input", "(batch, tgt)"),
                                ("embed × √d_model + PE", "op", "(batch, tgt, d_model)"),
                                ("decoder: N layers", "attn", "causal + padding masks"),
                                ("generator: linear", "op", "tied to the embedding"),
                                ("logits", "out", "(batch, tgt, tgt_vocab)")], gap=1.3)
    _arrow(ax, (enc[3][0] + 1.6, enc[3][1]), (dec[2][0] - 1.6, dec[2][1]), "", curve=0.2)
    ax.text(3.7, enc[3][1] - 0.9, "every decoder layer\nreads the memory", fontsize=8, ha="center", color="#333333")
    fig.tight_layout()
    return fig


def figure_training_loop() -> plt.Figure:
    """One training step with teacher forcing (drawn for notebook 06_training)."""
    fig, ax = _canvas(7.2, 7.4, "A training step with teacher forcing")
    _box(ax, 4.15, 8.6, "next batch", "input", "shuffled, padded: src, tgt_in, tgt_out, masks", width=4.6)
    _box(ax, 2.0, 7.4, "src: <human date> <eos>", "input", "(batch, src)", width=3.4)
    _box(ax, 6.5, 7.4, "tgt_in: <bos> y₁ … yₙ", "input", "(batch, tgt)", width=3.4)
    _arrow(ax, (3.2, 8.24), (2.3, 7.76))
    _arrow(ax, (5.1, 8.24), (6.2, 7.76))
    _box(ax, 2.0, 6.0, "encoder", "attn", "src_mask (batch, 1, src)", width=3.4)
    _box(ax, 6.5, 6.0, "decoder: all positions at once", "attn", "tgt_mask (batch, tgt, tgt)", width=3.8)
    _arrow(ax, (2.0, 7.04), (2.0, 6.36))
    _arrow(ax, (6.5, 7.04), (6.5, 6.36))
    _arrow(ax, (3.75, 6.0), (4.55, 6.0), "memory")
    steps = _chain(ax, 6.5, 4.75, [("logits", "out", "(batch, tgt, vocab)"),
                                   ("label-smoothed cross-entropy", "loss", "vs tgt_out: y₁ … yₙ <eos>"),
                                   ("backward, clip the gradient norm", "op", "max_norm = 1"),
                                   ("Adam step, warm-up schedule", "op", "lr = d^-0.5 min(s^-0.5, s w^-1.5)")],
                   gap=1.1, width=3.8)
    _arrow(ax, (6.5, 5.64), (6.5, steps[0][1] + 0.36))
    _arrow(ax, (8.45, steps[-1][1]), (6.45, 8.6), curve=0.45)
    ax.text(8.9, 5.2, "repeat", fontsize=8, color="#333333")
    ax.text(2.2, 3.2, "teacher forcing: the decoder reads\nthe true previous tokens (tgt_in),\n"
                      "not its own guesses; the causal\nmask keeps position t from seeing y_t",
            fontsize=8.5, ha="center", color="#333333")
    return fig


def figure_bert() -> plt.Figure:
    """BERT's inputs (token, segment, position embeddings) and its two pre-training heads
    (drawn for notebook 07_bert)."""
    tokens = ["[CLS]", "the", "cat", "[MASK]", ".", "[SEP]", "it", "got", "tired", "[SEP]"]
    segments = [0] * 6 + [1] * 4
    fig, ax = plt.subplots(figsize=(12, 6.4))
    ax.set_xlim(-2.6, len(tokens) + 0.2)
    ax.set_ylim(-0.4, 8.2)
    ax.axis("off")
    ax.set_title("BERT: inputs, encoder, pre-training heads", fontsize=11)
    rows = [("token (WordPiece)", lambda i, t: t, "input"),
            ("segment", lambda i, t: f"E_{'AB'[segments[i]]}", "norm"),
            ("position (learned)", lambda i, t: f"E_{i}", "op")]
    for i, token in enumerate(tokens):
        for r, (_, label, kind) in enumerate(rows):
            _box(ax, i + 0.5, 0.8 + r * 0.85, label(i, token), kind, width=0.86, height=0.55)
    for r, (name, _, _) in enumerate(rows):
        ax.text(-0.1, 0.8 + r * 0.85, name, ha="right", va="center", fontsize=9)
    ax.text(-0.1, 3.35, "sum, LayerNorm", ha="right", va="center", fontsize=9)
    ax.text(len(tokens) / 2, 3.35, "+  +  (batch, seq, d_model)", ha="center", va="center", fontsize=8, color="#555555")
    _box(ax, len(tokens) / 2, 4.55, "encoder: N post-LN layers, bidirectional self-attention (padding mask only)",
         "attn", "(batch, seq, d_model)", width=len(tokens) - 0.2, height=0.75)
    _box(ax, 0.5, 6.6, "NSP head", "loss", "[CLS] → pooler → 2", width=2.4, height=0.7)
    _box(ax, 3.5, 6.6, "MLM head", "loss", "masked positions → vocab", width=2.6, height=0.7)
    _arrow(ax, (0.5, 4.95), (0.5, 6.22))
    _arrow(ax, (3.5, 4.95), (3.5, 6.22))
    ax.text(5.2, 6.6, "MLM: 15% of the tokens chosen; 80% [MASK], 10% random, 10% unchanged; loss only there.\n"
                      "NSP: is segment B the sentence after A (50%) or a random one (50%)?", fontsize=8.5,
            va="center")
    return fig


def figure_gpt() -> plt.Figure:
    """A decoder-only stack, its causal mask and the KV cache (drawn for notebook 08_gpt)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 6.4), gridspec_kw={"width_ratios": [1.3, 0.8, 1.2]})
    ax = axes[0]
    ax.set_xlim(0, 7)
    ax.set_ylim(0, 9)
    ax.axis("off")
    ax.set_title("Decoder-only stack (pre-LN)", fontsize=11)
    b = _chain(ax, 3.2, 8.3, [("idx", "input", "(batch, T)"),
                              ("token + position embeddings", "op", "(batch, T, d_model)"),
                              ("LayerNorm → causal self-attention", "attn", "+ residual"),
                              ("LayerNorm → feed-forward (GELU)", "op", "+ residual"),
                              ("… num_layers blocks …", "op", ""),
                              ("final LayerNorm → lm_head", "norm", "tied to the token embeddings"),
                              ("logits", "out", "(batch, T, vocab): row t scores token t + 1")], gap=1.15,
               width=3.9)
    _residual(ax, 3.2, b[1][1], b[3][1], "×N")
    ax = axes[1]
    T = 6
    ax.imshow(torch.ones(T, T).tril(), cmap="Greens", vmin=0, vmax=1.6)
    ax.set_xticks(range(T), [f"k{j}" for j in range(T)])
    ax.set_yticks(range(T), [f"q{i}" for i in range(T)])
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title("Causal mask: True on and below\nthe diagonal", fontsize=10)
    ax = axes[2]
    ax.set_xlim(0, 7)
    ax.set_ylim(0, 9)
    ax.axis("off")
    ax.set_title("Generating with a KV cache", fontsize=11)
    for j in range(5):
        _box(ax, 0.9 + j * 1.0, 7.2, f"k{j}", "norm", width=0.8, height=0.5)
        _box(ax, 0.9 + j * 1.0, 6.5, f"v{j}", "norm", width=0.8, height=0.5)
    _box(ax, 5.9, 7.2, "k5", "attn", width=0.8, height=0.5)
    _box(ax, 5.9, 6.5, "v5", "attn", width=0.8, height=0.5)
    ax.text(2.9, 7.85, "past, per layer: (batch, heads, P = 5, d_head), kept", ha="center", fontsize=8.5)
    _box(ax, 5.9, 4.8, "new token x5", "input", "(batch, 1, d_model)", width=2.2)
    _arrow(ax, (5.9, 5.16), (5.9, 6.2), "k, v")
    _box(ax, 3.0, 4.8, "q5 attends to k0 … k5", "attn", "weights (batch, heads, 1, 6)", width=3.0)
    _arrow(ax, (4.75, 4.8), (4.55, 4.8))
    ax.text(3.5, 2.9, "each step feeds one token and appends one key and value per layer:\n"
                      "O(P) work per token instead of recomputing the whole prefix", ha="center", fontsize=8.5)
    fig.tight_layout()
    return fig


#: The figures of each notebook: file name -> drawing function.
FIGURES = {
    "01_attention": {"scaled_dot_product_attention.png": figure_attention},
    "02_multi_head_attention": {"multi_head_attention.png": figure_multihead},
    "04_encoder": {"encoder_layer.png": figure_encoder_layer},
    "05_decoder": {"decoder_and_transformer.png": figure_decoder},
    "06_training": {"training_loop.png": figure_training_loop},
    "07_bert": {"bert_inputs_and_heads.png": figure_bert},
    "08_gpt": {"decoder_only_and_kv_cache.png": figure_gpt},
}


def write_figures(folder: str = "solutions") -> list[str]:
    """Draw every figure of ``FIGURES`` into ``folder/NN_topic/`` as PNG; returns the paths written."""
    from pathlib import Path
    written = []
    for notebook, figures in FIGURES.items():
        for name, draw in figures.items():
            path = Path(folder) / notebook / name
            fig = draw()
            fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
            plt.close(fig)
            written.append(str(path))
    return written

