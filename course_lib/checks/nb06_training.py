"""Checks of notebook 06_training: the label-smoothing loss, the learning rate schedule, one
training step and greedy decoding."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..attention import causal_mask, padding_mask
from ..decoder import Transformer
from ..decoding import beam_search
from ..decoding import greedy_decode as reference_greedy_decode
from ..training import LabelSmoothingLoss, fit, transformer_lr
from ..training import train_step as reference_train_step
from .engine import CheckFailed, check_close, exercise


def _smoothing_variants(logits: Tensor, target: Tensor, smoothing: float, pad_id: int) -> dict[str, Tensor]:
    """The loss as common mistakes compute it, keyed by the message that names each mistake."""
    vocab = logits.shape[-1]
    log_probs = logits.log_softmax(-1)
    keep = target != pad_id
    one_hot = nn.functional.one_hot(target, vocab).to(logits.dtype)
    right = -(((1 - smoothing) * one_hot + smoothing / vocab) * log_probs).sum(-1)
    others = -(((1 - smoothing) * one_hot + smoothing / (vocab - 1) * (1 - one_hot)) * log_probs).sum(-1)
    no_share = -(((1 - smoothing) * one_hot + smoothing / vocab * (1 - one_hot)) * log_probs).sum(-1)
    plain = -(one_hot * log_probs).sum(-1)
    return {
        "the padding positions are averaged in: take the mean over the non-pad tokens only": right.mean(),
        "the pad tokens are left out of the sum but still counted: divide by the number of non-pad tokens":
            right[keep].sum() / target.numel(),
        "this is the sum over tokens; return the mean over the non-pad tokens": right[keep].sum(),
        "no smoothing: the target must be (1 - smoothing) on the right token plus smoothing / V everywhere":
            plain[keep].mean(),
        "smoothing spread over the V - 1 other tokens; spread smoothing / V over all V entries, the right one too":
            others[keep].mean(),
        "the right token gets only 1 - smoothing; it also gets its share smoothing / V (q must sum to 1)":
            no_share[keep].mean(),
        "use log-probabilities (log_softmax of the logits), not the raw logits":
            -((((1 - smoothing) * one_hot + smoothing / vocab) * logits).sum(-1))[keep].mean(),
        "use log-probabilities (log_softmax), not probabilities (softmax): the loss is -sum q log p":
            -((((1 - smoothing) * one_hot + smoothing / vocab) * logits.softmax(-1)).sum(-1))[keep].mean(),
        "log_softmax over the wrong axis: normalise over the vocabulary (dim=-1)":
            -((((1 - smoothing) * one_hot + smoothing / vocab) * logits.log_softmax(0)).sum(-1))[keep].mean(),
    }


@exercise(forbid={"course_lib.training.LabelSmoothingLoss": LabelSmoothingLoss,
                  "torch.nn.functional.cross_entropy with label_smoothing":
                      (nn.functional.cross_entropy, lambda args: args.get("label_smoothing", 0.0) > 0)})
def check_label_smoothing_loss(label_smoothing_loss: Callable[..., Tensor]) -> None:
    """Notebook 06: ``label_smoothing_loss(logits, target, smoothing, pad_id)`` equals
    ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_id)``; logits (N, V), target (N,)."""
    g = torch.Generator().manual_seed(60)
    logits = 2 * torch.randn(10, 7, generator=g, dtype=torch.float64)
    target = torch.randint(1, 7, (10,), generator=g)
    target[[2, 5, 6]] = 0
    for smoothing in (0.1, 0.3):
        expected = nn.functional.cross_entropy(logits, target, label_smoothing=smoothing, ignore_index=0)
        check_close(label_smoothing_loss(logits.clone(), target.clone(), smoothing, 0), expected,
                    f"label_smoothing_loss with smoothing={smoothing}",
                    _smoothing_variants(logits, target, smoothing, 0), atol=1e-6)


def _rate_variants(step: int, d_model: int, warmup: int) -> dict[str, float]:
    s = max(step, 1)
    return {
        "max where the formula has min: the rate must grow during warm-up, then decay":
            d_model ** -0.5 * max(s ** -0.5, s * warmup ** -1.5),
        "the d_model^-0.5 factor is missing": min(s ** -0.5, s * warmup ** -1.5),
        "d_model should be raised to -0.5, not 0.5": d_model ** 0.5 * min(s ** -0.5, s * warmup ** -1.5),
        "warm-up should be warmup^-1.5 times step, not step^-1.5 times warmup":
            d_model ** -0.5 * min(s ** -0.5, warmup * s ** -1.5),
        "the warm-up exponent is -1.5: step * warmup ** -1.5, not warmup ** 1.5":
            d_model ** -0.5 * min(s ** -0.5, s * warmup ** 1.5),
        "the decay exponent is -0.5: step ** -0.5, not step ** 0.5":
            d_model ** -0.5 * min(s ** 0.5, s * warmup ** -1.5),
        "the decay is step^-0.5 (1 / sqrt(step)), not 1 / step": d_model ** -0.5 * min(1 / s, s * warmup ** -1.5),
    }


@exercise(forbid={"course_lib.training.transformer_lr": transformer_lr})
def check_rate(rate: Callable[[int, int, int], float]) -> None:
    """Notebook 06: ``rate(step, d_model, warmup)`` = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5),
    with step 0 read as step 1."""
    try:
        at_zero = rate(0, 512, 4000)
    except ZeroDivisionError:
        raise CheckFailed("rate(0, ...) divides by zero: read step 0 as step 1 (step = max(step, 1))") from None
    results = []
    for step, d_model, warmup in ((0, 512, 4000), (1, 512, 4000), (100, 512, 4000), (4000, 512, 4000),
                                  (9000, 512, 4000), (30, 64, 50), (500, 64, 50)):
        expected = d_model ** -0.5 * min(max(step, 1) ** -0.5, max(step, 1) * warmup ** -1.5)
        got = at_zero if step == 0 else rate(step, d_model, warmup)
        what = f"rate(step={step}, d_model={d_model}, warmup={warmup})"
        if isinstance(got, Tensor):
            got = got.item()
        if not isinstance(got, (int, float)):
            raise CheckFailed(f"{what} should be a float, got {type(got).__name__}"
                              + (" (did you forget to `return` it?)" if got is None else ""))
        results.append((what, got, expected, (step, d_model, warmup)))
    wrong = [r for r in results if not math.isclose(r[1], r[2], rel_tol=1e-6)]
    steps = [w for w in wrong if w[3][0] != 0]
    if not wrong:
        return
    if not steps:
        what, got, expected, _ = wrong[0]
        raise CheckFailed(f"{what} = {got:.3g}: step 0 should give the same rate as step 1 ({expected:.3g})")
    # Name a mistake only where it gives every value the answer gave (the right ones too: two
    # mistakes can agree on the warm-up steps and differ after them), and only one does.
    named = [m for m in _rate_variants(1, 1, 1)
             if all(math.isclose(got, _rate_variants(*case)[m], rel_tol=1e-6)
                    for _, got, _, case in results if case[0] != 0)]
    what, got, expected, _ = steps[0]
    if len(named) == 1:
        raise CheckFailed(f"{what} is not right: {named[0]}")
    raise CheckFailed(f"{what} = {got:.6g}, expected {expected:.6g}")


def _tiny_transformer(seed: int, vocab: int = 11) -> nn.Module:
    torch.manual_seed(seed)
    return Transformer(vocab, vocab, d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                       d_ff=32, dropout=0.0, max_len=32).double()


def _step_variant(model: nn.Module, batch, loss_fn, optimizer, scheduler, max_norm: float, zero_grad=True,
                  clip=True, shift=True) -> float:
    """One training step, or one of its common mistakes; returns the loss."""
    if zero_grad:
        optimizer.zero_grad()
    tgt = batch.tgt_in if shift else batch.tgt_out
    logits = model(batch.src, tgt, batch.src_mask, batch.tgt_mask)
    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    return loss.item()


@exercise(forbid={"course_lib.training.train_step": reference_train_step, "course_lib.training.fit": fit})
def check_train_step(train_step: Callable[..., float]) -> None:
    """Notebook 06: ``train_step(model, batch, loss_fn, optimizer, scheduler, max_norm)`` does one
    update (model.train(), zero_grad, forward on batch.tgt_in, loss against batch.tgt_out, backward,
    clip to max_norm, optimizer.step(), scheduler.step()) and returns the loss as a float."""
    from ..batching import make_batch
    from ..training import LabelSmoothingLoss, transformer_optimizer

    g = torch.Generator().manual_seed(61)
    seqs = [torch.randint(4, 11, (n,), generator=g).tolist() for n in (3, 5, 2, 4)]
    batch = make_batch(seqs, [s[::-1] for s in seqs])
    loss_fn = LabelSmoothingLoss(0.1, pad_id=0)  # takes (batch, tgt, V) or (N, V) logits

    def fresh():
        model = _tiny_transformer(62)
        optimizer, scheduler = transformer_optimizer(model, 16, warmup=3, factor=20.0)
        for p in model.parameters():  # stale gradients, as after an earlier step
            p.grad = torch.full_like(p, 0.5)
        return model, optimizer, scheduler

    model, optimizer, scheduler = fresh()
    model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(model, batch, loss_fn, optimizer, scheduler, 0.1)
    if isinstance(loss, Tensor):
        raise CheckFailed("train_step should return the loss as a Python float: `return loss.item()` "
                          "(a tensor would keep the whole graph alive)")
    if not isinstance(loss, float):
        raise CheckFailed(f"train_step should return the loss as a float, got {type(loss).__name__}"
                          + (" (did you forget to `return` it?)" if loss is None else ""))
    if not model.training:
        raise CheckFailed("the model is still in eval mode: call model.train() first, so that dropout is on")
    after = list(model.parameters())
    if all(torch.equal(a, b) for a, b in zip(before, after)):
        if all(p.grad is None or not p.grad.any() for p in after):
            raise CheckFailed("no parameter changed and the gradients are empty: optimizer.zero_grad() ran between "
                              "loss.backward() and optimizer.step(); call it at the start of the step instead")
        raise CheckFailed("no parameter changed: call optimizer.step() after loss.backward()")

    def params_of(**mistake) -> tuple[list[Tensor], float, float]:
        m, opt, sched = fresh()
        step_loss = _step_variant(m, batch, loss_fn, opt, sched, 0.1, **mistake)
        return [p.detach() for p in m.parameters()], opt.param_groups[0]["lr"], step_loss

    expected, expected_lr, expected_loss = params_of()
    same = lambda ps: all(torch.allclose(a, b, atol=1e-10, rtol=0) for a, b in zip(after, ps))  # noqa: E731
    if same(expected):
        if not math.isclose(optimizer.param_groups[0]["lr"], expected_lr, rel_tol=1e-9):
            raise CheckFailed("the learning rate did not move on: call scheduler.step() after optimizer.step()")
        if not math.isclose(loss, expected_loss, rel_tol=1e-6):
            raise CheckFailed(f"train_step returned {loss:.6g}, but the loss of this batch is {expected_loss:.6g}: "
                              "return loss.item() of the loss you called backward() on")
        return
    mistakes = {
        "the gradients left from before this step were not cleared: call optimizer.zero_grad() at the "
        "start of train_step, before the forward pass":
            {"zero_grad": False},
        "the gradients were not clipped: nn.utils.clip_grad_norm_(model.parameters(), max_norm) "
        "between backward() and optimizer.step()": {"clip": False},
        "the decoder's input is batch.tgt_in (<bos> y1 ... yn); batch.tgt_out is what it must predict":
            {"shift": False},
    }
    for message, mistake in mistakes.items():
        if same(params_of(**mistake)[0]):
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            if mistake == {"clip": False} and grads and torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])) <= 0.1 + 1e-9:
                message = "clip the gradients before optimizer.step(), not after: the step used unclipped ones"
            raise CheckFailed(f"train_step is not right: {message}")
    raise CheckFailed("the parameters after train_step differ from those after one correct update; check "
                      "the order: zero_grad, forward, loss, backward, clip, optimizer.step, scheduler.step")


def _greedy_variant(model: nn.Module, src: Tensor, max_len: int, bos_id: int, eos_id: int, pad_id: int,
                    causal: bool = True, last: bool = True, stop: bool = True, src_padding: bool = True,
                    feed: bool = True) -> Tensor:
    """Greedy decoding, or one of its common mistakes."""
    src_mask = padding_mask(src, pad_id) if src_padding else None
    memory = model.encode(src, src_mask)
    out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        prefix = out if feed else out[:, :1]
        tgt_mask = causal_mask(prefix.shape[1]).unsqueeze(0) if causal else None
        hidden = model.decode(prefix, memory, src_mask, tgt_mask)
        token = model.generator(hidden[:, -1 if last else 0]).argmax(-1)
        if stop:
            token = token.masked_fill(done, pad_id)
        out = torch.cat([out, token.unsqueeze(1)], dim=1)
        done |= token == eos_id
        if stop and done.all():
            break
    return out


@exercise(forbid={"course_lib.decoding.greedy_decode": reference_greedy_decode,
                  "course_lib.decoding.beam_search": beam_search})
def check_greedy_decode(greedy_decode: Callable[..., Tensor]) -> None:
    """Notebook 06: ``greedy_decode(model, src, max_len, bos_id, eos_id, pad_id)`` returns (batch, 1 + n),
    n <= max_len: <bos>, then the argmax token of each step; after a row's <eos>, pad_id."""
    model = _tiny_transformer(60).eval()
    with torch.no_grad():
        # Larger decoder weights make the next token depend on the whole prefix, so that every
        # mistake below decodes differently; pad and bos are never predicted.
        for p in model.decoder.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
        model.generator.bias[:2] = -30.0
    g = torch.Generator().manual_seed(65)
    src = torch.randint(4, 11, (4, 6), generator=g)
    src[1, 3:] = 0
    src[2, 2:] = 0
    with torch.no_grad():
        never = _greedy_variant(model, src, 8, 1, -1, 0)
        eos = int(never[0, 4])  # a token the model produces partway: rows stop at different steps
        expected = _greedy_variant(model, src, 8, 1, eos, 0)
        mistakes = {
            "the decoder needs the causal mask (tgt_mask) even here: during training each position "
            "saw only the ones before it": _greedy_variant(model, src, 8, 1, eos, 0, causal=False),
            "the next token comes from the last position's logits (hidden[:, -1]), not the first":
                _greedy_variant(model, src, 8, 1, eos, 0, last=False),
            "after a row's <eos>, fill it with pad_id (and stop once every row has finished)":
                _greedy_variant(model, src, 8, 1, eos, 0, stop=False),
            "the source padding must be masked: pass src_mask = padding_mask(src, pad_id) to encode and decode":
                _greedy_variant(model, src, 8, 1, eos, 0, src_padding=False),
            "the output must start with <bos> (bos_id) in column 0": expected[:, 1:],
            "the chosen tokens are never fed back: each step decodes the whole output so far "
            "(out, growing by one column per step), not only <bos>":
                _greedy_variant(model, src, 8, 1, eos, 0, feed=False),
        }
    with torch.no_grad():
        got = greedy_decode(model, src.clone(), 8, 1, eos, 0)
    if isinstance(got, Tensor) and got.dtype != torch.long:
        raise CheckFailed(f"greedy_decode should return token ids (torch.long), got {got.dtype}")
    check_close(got, expected, "greedy_decode(model, src, max_len=8, ...)", mistakes, atol=0)
