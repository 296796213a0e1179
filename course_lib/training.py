"""Training a Transformer: the loss, the optimizer and its schedule, the loop (introduced in notebook 06_training).

The recipe of "Attention Is All You Need", section 5:
- cross-entropy against **label-smoothed** targets (epsilon = 0.1);
- **Adam** with beta1 = 0.9, beta2 = 0.98, eps = 1e-9 and a learning rate that grows linearly
  for ``warmup`` steps and then decays as 1/sqrt(step);
- dropout (inside the model) and, a common addition, **gradient clipping**.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from .data.tokenizers import PAD_ID, Batch


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against smoothed targets, averaged over the non-padding tokens (introduced in notebook 06_training).

    The target distribution puts 1 - smoothing + smoothing / V on the right token and
    smoothing / V on each of the V vocabulary entries, the others included; the loss is
    -sum_v q_v log p_v. The model is thus never pushed to put all its probability on one token,
    which the paper found "hurts perplexity ... but improves accuracy and BLEU".
    The same function as ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_id)``.
    """

    def __init__(self, smoothing: float = 0.1, pad_id: int | None = PAD_ID) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing, self.pad_id = smoothing, pad_id

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (..., V); target: (...) token ids. Returns the mean loss per scored token (a scalar)."""
        if logits.shape[:-1] != target.shape:
            raise ValueError(f"logits (..., V) must match target (...): got {tuple(logits.shape)} "
                             f"and {tuple(target.shape)}")
        # At least float32 (bf16 logits under autocast): log-probabilities need the precision.
        log_probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(dim=-1)
        vocab = logits.shape[-1]
        q = torch.full_like(log_probs, self.smoothing / vocab)
        q.scatter_(-1, target.unsqueeze(-1), 1.0 - self.smoothing + self.smoothing / vocab)
        loss = -(q * log_probs).sum(dim=-1)
        if self.pad_id is None:
            return loss.mean()
        keep = target != self.pad_id
        return loss[keep].sum() / keep.sum()


def transformer_lr(step: int, d_model: int, warmup: int = 4000, factor: float = 1.0) -> float:
    """The paper's learning rate: factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    (introduced in notebook 06_training).

    Linear growth for ``warmup`` steps, peak d_model^-0.5 * warmup^-0.5, then 1/sqrt(step)
    decay. Steps count from 1; step 0 is read as step 1 (0^-0.5 would divide by zero).
    """
    step = max(step, 1)
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def transformer_optimizer(model: nn.Module, d_model: int, warmup: int = 4000,
                          factor: float = 1.0) -> tuple[torch.optim.Adam, LambdaLR]:
    """Adam(betas=(0.9, 0.98), eps=1e-9) and a LambdaLR that follows ``transformer_lr``
    (introduced in notebook 06_training).

    Call ``scheduler.step()`` after each ``optimizer.step()``: the n-th update (n = 1, 2, ...)
    then uses transformer_lr(n), as in the paper.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    # LambdaLR multiplies the base lr (1.0) by the lambda of its own counter, which starts at 0.
    scheduler = LambdaLR(optimizer, lambda i: transformer_lr(i + 1, d_model, warmup, factor))
    return optimizer, scheduler


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on a CUDA device, a no-op elsewhere (introduced in notebook 06_training).

    bf16 has float32's range, so unlike fp16 it needs no loss scaling.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _forward(model: nn.Module, batch: Batch) -> Tensor:
    return model(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask)


def _accuracy(logits: Tensor, target: Tensor, pad_id: int = PAD_ID) -> tuple[int, int]:
    keep = target != pad_id
    return int(((logits.argmax(-1) == target) & keep).sum()), int(keep.sum())


def train_step(model: nn.Module, batch: Batch, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler=None, max_norm: float | None = 1.0, amp: bool = False) -> tuple[float, float]:
    """One update: forward with teacher forcing, loss, backward, clip, step (introduced in notebook 06_training).

    ``batch`` must be on the model's device. Gradients are clipped to a global norm of
    ``max_norm`` (None: no clipping). ``amp`` runs the forward pass under bf16 autocast on
    CUDA. Returns the loss and the token accuracy on this batch.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(batch.src.device, amp):
        logits = _forward(model, batch)
    loss = loss_fn(logits, batch.tgt_out)
    loss.backward()
    if max_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    correct, total = _accuracy(logits.detach(), batch.tgt_out)
    return loss.item(), correct / max(total, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], loss_fn: nn.Module,
             device: torch.device | str | None = None, amp: bool = False) -> tuple[float, float]:
    """Mean loss per token and token accuracy over ``batches``, in eval mode (introduced in notebook 06_training)."""
    device = device or next(model.parameters()).device
    model.eval()
    loss_sum = correct = total = 0
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, amp):
            logits = _forward(model, batch)
        n = batch.num_tokens
        loss_sum += loss_fn(logits, batch.tgt_out).item() * n
        c, _ = _accuracy(logits, batch.tgt_out)
        correct, total = correct + c, total + n
    if total == 0:
        raise ValueError("evaluate got no target tokens")
    return loss_sum / total, correct / total


@dataclass
class History:
    """What ``fit`` records: per training step, and per evaluation (introduced in notebook 06_training)."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training time, evaluations included

    @property
    def steps(self) -> int:
        return self.step[-1] if self.step else 0


def fit(model: nn.Module, train_batches: Iterable[Batch], optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module, steps: int, scheduler=None, val_batches: Iterable[Batch] | None = None,
        eval_every: int = 200, max_norm: float | None = 1.0, amp: bool = False,
        max_seconds: float | None = None, history: History | None = None,
        progress: bool = True) -> History:
    """Train for ``steps`` updates, cycling through ``train_batches`` (introduced in notebook 06_training).

    The model's device decides where the batches go. Every ``eval_every`` steps and at the
    end, evaluate on ``val_batches`` if given. ``max_seconds`` stops earlier when the time is
    up (training time, evaluations included). Passing the ``history`` of an earlier call
    continues it. A tqdm progress bar shows the loss and the learning rate.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    history = history or History()
    start_step, start = history.steps, time.perf_counter() - history.seconds
    bar = tqdm(total=steps, disable=not progress, desc="training", unit="step", mininterval=0.5)

    def validate(step: int) -> None:
        if val_batches is not None:
            loss, acc = evaluate(model, val_batches, loss_fn, device, amp)
            history.val_step.append(step)
            history.val_loss.append(loss)
            history.val_acc.append(acc)

    step, out_of_time = start_step, False
    try:
        while step < start_step + steps:
            for batch in train_batches:
                lr = optimizer.param_groups[0]["lr"]
                loss, acc = train_step(model, batch.to(device), loss_fn, optimizer, scheduler, max_norm, amp)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {step + 1}: "
                                             "try a smaller learning rate or clipping")
                step += 1
                for name, value in (("step", step), ("train_loss", loss), ("train_acc", acc), ("lr", lr)):
                    getattr(history, name).append(value)
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                if step % eval_every == 0:
                    validate(step)
                out_of_time = max_seconds is not None and time.perf_counter() - start >= max_seconds
                if step >= start_step + steps or out_of_time:
                    break
            if out_of_time:
                break
        if not history.val_step or history.val_step[-1] != step:
            validate(step)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
    return history


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, history: History | None = None, **extra) -> None:
    """Save the weights and, if given, the optimizer, scheduler, history and any ``extra``
    values (the model's configuration, say) in one file (introduced in notebook 06_training)."""
    state = {"model": model.state_dict(), "extra": extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if history is not None:
        state["history"] = asdict(history)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, map_location: torch.device | str = "cpu") -> tuple[History | None, dict]:
    """Restore what ``save_checkpoint`` wrote into ``model`` (and ``optimizer``, ``scheduler`` if given).
    Returns the history (or None) and the extra values (introduced in notebook 06_training)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    history = History(**state["history"]) if "history" in state else None
    return history, state["extra"]
