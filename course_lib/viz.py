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
