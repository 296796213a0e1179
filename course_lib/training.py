"""Training a Transformer: the loss, the optimizer and its schedule, the loop (introduced in notebook 06_training).

The recipe of "Attention Is All You Need", section 5:
- cross-entropy against **label-smoothed** targets (epsilon = 0.1);
- **Adam** with beta1 = 0.9, beta2 = 0.98, eps = 1e-9 and a learning rate that grows linearly
  for ``warmup`` steps and then decays as 1/sqrt(step);
- dropout (inside the model) and, a common addition, **gradient clipping**.

The loop (``train_step``, ``evaluate``, ``fit``) is the course's only one: it trains the
encoder-decoder of notebook 06 on padded ``Batch``es and the GPT of notebook 08 on
``(inputs, targets)`` windows of a long text, with AdamW and the warmup-cosine schedule
that language models use today.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from .batching import Batch, LMBatch
from .data.tokenizers import PAD_ID
from .validation import check, check_callable, check_device, check_int, check_number, check_tensor, check_type, describe


class LabelSmoothingLoss(nn.Module):
    """Cross-entropy against smoothed targets, averaged over the non-padding tokens
    (introduced in notebook 06_training).

    The target distribution puts 1 - smoothing + smoothing / V on the right token and
    smoothing / V on each of the V vocabulary entries, the others included; the loss is
    -sum_v q_v log p_v. The model is thus never pushed to put all its probability on one token,
    which the paper found "hurts perplexity ... but improves accuracy and BLEU".
    The same function as ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_id)``.
    """

    def __init__(self, smoothing: float = 0.1, pad_id: int | None = PAD_ID) -> None:
        super().__init__()
        check_number("smoothing", smoothing, 0.0, 1.0, high_open=True)
        check_int("pad_id", pad_id, optional=True)
        self.smoothing, self.pad_id = smoothing, pad_id

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (..., V); target: (...) token ids. Returns the mean loss per scored token (a scalar)."""
        check_tensor("logits", logits, "... V", "float")
        check_tensor("target", target, dtype="index")
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
    check_int("step", step, low=0)
    check_int("d_model", d_model, low=1)
    check_int("warmup", warmup, low=1)
    check_number("factor", factor, low=0.0)
    step = max(step, 1)
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def transformer_optimizer(model: nn.Module, d_model: int, warmup: int = 4000,
                          factor: float = 1.0) -> tuple[torch.optim.Adam, LambdaLR]:
    """Adam(betas=(0.9, 0.98), eps=1e-9) and a LambdaLR that follows ``transformer_lr``
    (introduced in notebook 06_training).

    Call ``scheduler.step()`` after each ``optimizer.step()``: the n-th update (n = 1, 2, ...)
    then uses transformer_lr(n), as in the paper.
    """
    check_type("model", model, nn.Module)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    # LambdaLR multiplies the base lr (1.0) by the lambda of its own counter, which starts at 0.
    scheduler = LambdaLR(optimizer, lambda i: transformer_lr(i + 1, d_model, warmup, factor))
    return optimizer, scheduler


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy in nats per token: logits (batch, T, V), targets (batch, T).
    Divide by ln 2 for bits per token."""
    check_tensor("logits", logits, "batch T V", "float")
    check_tensor("targets", targets, "batch T", "index", batch=logits.shape[0], T=logits.shape[1])
    # bf16 logits (autocast) are scored in float32; float64 stays float64
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def adamw(model: nn.Module, lr: float, weight_decay: float = 0.1,
          betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
    """AdamW as GPT-2-style models are trained: weight decay on the matrices (embeddings
    included), none on biases and LayerNorm gains; torch's fused kernel."""
    check_type("model", model, nn.Module)
    check_number("lr", lr, 0.0, low_open=True)
    check_number("weight_decay", weight_decay, low=0.0)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, fused=True)


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.1) -> float:
    """Learning-rate factor at ``step`` (from 0) of ``total``: linear warmup over ``warmup``
    steps to 1, then a cosine down to ``min_ratio`` at ``total``."""
    check_int("step", step, low=0)
    check_int("total", total, low=1)
    check_int("warmup", warmup, low=0)
    check_number("min_ratio", min_ratio, 0.0, 1.0)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine(LambdaLR):
    """A scheduler that follows ``warmup_cosine``. ``total`` may shrink while training: ``fit``
    with ``max_seconds`` fits it to the number of steps the time allows."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float = 0.1) -> None:
        self.total, self.warmup, self.min_ratio = total, warmup, min_ratio
        super().__init__(optimizer, lambda step: warmup_cosine(step, self.total, self.warmup, self.min_ratio))


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on a CUDA device, a no-op elsewhere.

    bf16 has float32's range, so unlike fp16 it needs no loss scaling.
    """
    device = check_device("device", device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _logits_and_targets(model: nn.Module, batch: Batch | LMBatch) -> tuple[Tensor, Tensor, int | None]:
    """The model's logits for a batch, the targets they are scored against, and the pad id."""
    if isinstance(batch, Batch):  # an encoder-decoder, with teacher forcing
        return model(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask), batch.tgt_out, PAD_ID
    x, y = batch  # a language model: it returns (logits, its key-value cache)
    return model(x)[0], y, None


def _check_batch(name: str, batch: object) -> None:
    """A ``Batch``, or an ``LMBatch`` (any pair of tensors: inputs, targets)."""
    check(isinstance(batch, Batch) or (isinstance(batch, tuple) and len(batch) == 2
                                       and all(isinstance(t, Tensor) for t in batch)),
          name, "a Batch or an (inputs, targets) LMBatch of tensors", batch, TypeError)


def _check_batches(name: str, batches: object) -> None:
    """An iterable of batches (a list, a loader), not one batch."""
    single = isinstance(batches, (Batch, Tensor)) or (isinstance(batches, tuple)
                                                       and any(isinstance(t, Tensor) for t in batches))
    check(not single and hasattr(batches, "__iter__"), name,
          "an iterable of batches (a list or a loader; put a single batch in a list)", batches, TypeError)


def _check_training(model: object, loss_fn: object, optimizer: object | None = None) -> None:
    check_type("model", model, nn.Module)
    check_callable("loss_fn", loss_fn)
    if optimizer is not None:
        check_type("optimizer", optimizer, torch.optim.Optimizer)


def _to(batch: Batch | LMBatch, device: torch.device | str) -> Batch | LMBatch:
    if isinstance(batch, Batch):
        return batch.to(device)
    return LMBatch(*(t.to(device, non_blocking=True) for t in batch))


def _accuracy(logits: Tensor, target: Tensor, pad_id: int | None) -> tuple[int, int]:
    """Correct argmax predictions and scored tokens (padding excluded)."""
    right = logits.argmax(-1) == target
    if pad_id is None:
        return int(right.sum()), target.numel()
    keep = target != pad_id
    return int((right & keep).sum()), int(keep.sum())


def train_step(model: nn.Module, batch: Batch | LMBatch, loss_fn: Callable[[Tensor, Tensor], Tensor],
               optimizer: torch.optim.Optimizer, scheduler=None, max_norm: float | None = 1.0,
               amp: bool = False) -> tuple[float, float]:
    """One update: forward (with teacher forcing for a ``Batch``), loss, backward, clip, step.

    ``batch`` must be on the model's device: a ``Batch`` for an encoder-decoder, or an
    ``LMBatch`` (inputs, targets) for a language model. Gradients are clipped to a global norm
    of ``max_norm`` (None: no clipping). ``amp`` runs the forward pass under bf16 autocast on
    CUDA. Returns the loss and the token accuracy on this batch.
    """
    _check_training(model, loss_fn, optimizer)
    _check_batch("batch", batch)
    check_number("max_norm", max_norm, 0.0, low_open=True, optional=True)
    if not model.training:  # a submodule put in eval mode on purpose (a frozen part) stays so
        model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(batch[0].device if isinstance(batch, tuple) else batch.src.device, amp):
        logits, target, pad_id = _logits_and_targets(model, batch)
    loss = loss_fn(logits, target)
    loss.backward()
    if max_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    correct, total = _accuracy(logits.detach(), target, pad_id)
    return loss.item(), correct / max(total, 1)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch | LMBatch], loss_fn: Callable[[Tensor, Tensor], Tensor],
             device: torch.device | str | None = None, amp: bool = False) -> tuple[float, float]:
    """Mean loss per token and token accuracy over ``batches``, in eval mode (introduced in notebook 08_gpt)."""
    _check_training(model, loss_fn)
    _check_batches("batches", batches)
    device = check_device("device", device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = correct = total = 0
    for i, batch in enumerate(batches):
        _check_batch(f"batches[{i}]", batch)
        batch = _to(batch, device)
        with autocast(device, amp):
            logits, target, pad_id = _logits_and_targets(model, batch)
        c, n = _accuracy(logits, target, pad_id)
        loss_sum += loss_fn(logits, target).item() * n
        correct, total = correct + c, total + n
    model.train(was_training)
    if total == 0:
        raise ValueError(f"batches must hold at least one target token, got none from {describe(batches)}: "
                         "are the batches empty?")
    return loss_sum / total, correct / total


@dataclass
class History:
    """What ``fit`` records: per training step, and per evaluation."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0       # training time, evaluations excluded
    eval_seconds: float = 0.0  # time spent evaluating

    @property
    def steps(self) -> int:
        return self.step[-1] if self.step else 0


def fit(model: nn.Module, train_batches: Iterable[Batch | LMBatch], optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Tensor, Tensor], Tensor], steps: int, scheduler=None,
        val_batches: Iterable[Batch | LMBatch] | None = None, eval_every: int = 200,
        max_norm: float | None = 1.0, amp: bool = False, max_seconds: float | None = None,
        history: History | None = None, progress: bool = True,
        on_eval: Callable[[int, float], None] | None = None) -> History:
    """Train for ``steps`` updates, cycling through ``train_batches`` (introduced in notebook 06_training).

    The model's device decides where the batches go. Every ``eval_every`` steps and at the
    end, evaluate on ``val_batches`` if given and call ``on_eval(step, val_loss)``.
    ``max_seconds`` stops earlier when the training time (evaluations excluded) is up; a
    ``WarmupCosine`` scheduler is then fitted to the steps the time allows at the speed so far
    (after 5 and 10 steps, then every 20), so that its decay still ends at the last step.
    Passing the ``history`` of an earlier call continues it. A tqdm bar shows the loss and lr.
    """
    from tqdm.auto import tqdm

    _check_training(model, loss_fn, optimizer)
    _check_batches("train_batches", train_batches)
    if val_batches is not None:
        _check_batches("val_batches", val_batches)
    check_int("steps", steps, low=1)
    check_int("eval_every", eval_every, low=1)
    check_number("max_norm", max_norm, 0.0, low_open=True, optional=True)
    check_number("max_seconds", max_seconds, 0.0, low_open=True, optional=True)
    check_type("history", history, (History, type(None)), "a History or None")
    check_callable("on_eval", on_eval, optional=True)
    device = next(model.parameters()).device
    history = history or History()
    start_step, end_step = history.steps, history.steps + steps
    bar = tqdm(total=steps, disable=not progress, desc="training", unit="step", mininterval=0.5)
    start = time.perf_counter() - history.seconds - history.eval_seconds

    def validate(step: int) -> None:
        if val_batches is None:
            return
        t0 = time.perf_counter()
        loss, acc = evaluate(model, val_batches, loss_fn, device, amp)
        history.eval_seconds += time.perf_counter() - t0
        history.val_step.append(step)
        history.val_loss.append(loss)
        history.val_acc.append(acc)
        if on_eval is not None:
            on_eval(step, loss)

    step, done = start_step, False
    try:
        while not done:
            took_one = False
            for batch in train_batches:
                took_one = True
                lr = optimizer.param_groups[0]["lr"]
                loss, acc = train_step(model, _to(batch, device), loss_fn, optimizer, scheduler, max_norm, amp)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {step + 1}: "
                                             "try a smaller learning rate or clipping")
                step += 1
                for name, value in (("step", step), ("train_loss", loss), ("train_acc", acc), ("lr", lr)):
                    getattr(history, name).append(value)
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                if step % eval_every == 0 and step < end_step:
                    validate(step)
                if max_seconds is not None:
                    elapsed = time.perf_counter() - start - history.eval_seconds
                    done_steps = step - start_step
                    if isinstance(scheduler, WarmupCosine) and (done_steps in (5, 10) or done_steps % 20 == 0):
                        end_step = start_step + min(steps, int(done_steps * max_seconds / elapsed))
                        scheduler.total = bar.total = end_step - start_step
                    done = elapsed >= max_seconds
                if step >= end_step or done:
                    done = True
                    break
            if not took_one:
                raise ValueError("train_batches must be a non-empty loader that can be iterated more than once "
                                 "(a list or a BatchLoader, not a used-up generator), got one that yielded no batch")
        if not history.val_step or history.val_step[-1] != step:
            validate(step)
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start - history.eval_seconds
    return history


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None, history: History | None = None, **extra) -> None:
    """Save the weights and, if given, the optimizer, scheduler, history and any ``extra``
    values (the model's configuration, say) in one file (introduced in notebook 06_training)."""
    check_type("path", path, (str, Path), "a file path (str or Path)")
    check_type("model", model, nn.Module)
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
    check_type("path", path, (str, Path), "a file path (str or Path)")
    check_type("model", model, nn.Module)
    if not Path(path).is_file():
        raise FileNotFoundError(f"path must be a checkpoint file written by save_checkpoint, got {str(path)!r}: "
                                "no such file")
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    history = History(**state["history"]) if "history" in state else None
    return history, state["extra"]
