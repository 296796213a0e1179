"""Plots shared by the notebooks: attention heatmaps (notebooks 01, 02) and curves."""
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
    """One heatmap per head of (num_heads, seq, seq) self-attention weights."""
    num_heads = weights.shape[0]
    fig, axes = plt.subplots(1, num_heads, figsize=(3.2 * num_heads, 3.4), squeeze=False)
    for h, ax in enumerate(axes[0]):
        w = weights[h].detach().float().cpu()
        ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if h == 0 else [""] * len(tokens), fontsize=7)
        ax.set_title(f"head {h}")
    fig.suptitle(title)
    fig.tight_layout()
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
