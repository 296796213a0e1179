"""course_lib.checks.nb06_training: each check accepts a correct answer and names each mistake it claims to
detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import checks, decoding, training
from course_lib.checks.nb06_training import _greedy_variant

greedy_decode, transformer_lr = student_copy(decoding.greedy_decode), student_copy(training.transformer_lr)
LabelSmoothingLoss, reference_train_step = student_copy(training.LabelSmoothingLoss), student_copy(training.train_step)


def smoothed(logits, target, smoothing, pad_id, spread=None, mean_over_all=False, right_share=True):
    """A label-smoothed loss written out; the defaults make it right, each flag is one mistake."""
    vocab = logits.shape[-1]
    one_hot = torch.nn.functional.one_hot(target, vocab).to(logits.dtype)
    if spread == "others":
        q = (1 - smoothing) * one_hot + smoothing / (vocab - 1) * (1 - one_hot)
    elif not right_share:
        q = (1 - smoothing) * one_hot + smoothing / vocab * (1 - one_hot)
    else:
        q = (1 - smoothing) * one_hot + smoothing / vocab
    loss = -(q * logits.log_softmax(-1)).sum(-1)
    return loss.mean() if mean_over_all else loss[target != pad_id].mean()


def test_label_smoothing_loss_check_accepts_course_lib():
    checks.check_label_smoothing_loss(
        lambda logits, target, smoothing, pad_id: LabelSmoothingLoss(smoothing, pad_id)(logits, target))


@pytest.mark.parametrize("student, fragment", [
    (lambda *a: smoothed(*a, mean_over_all=True), "non-pad tokens only"),
    (lambda *a: smoothed(*a, spread="others"), "V - 1 other tokens"),
    (lambda *a: smoothed(*a, right_share=False), "its share"),
    (lambda lg, t, s, p: torch.nn.functional.cross_entropy(lg, t, ignore_index=p), "no smoothing"),
    (lambda lg, t, s, p: smoothed(lg, t, s, p) * (t != p).sum(), "sum over tokens"),
    (lambda *a: None, "forget to `return`"),
])
def test_label_smoothing_loss_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_label_smoothing_loss, student, fragment)


def test_rate_check_accepts_course_lib():
    checks.check_rate(lambda step, d_model, warmup: transformer_lr(step, d_model, warmup))


@pytest.mark.parametrize("student, fragment", [
    (lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -1.5), "divides by zero"),
    (lambda s, d, w: d ** -0.5 * max(max(s, 1) ** -0.5, max(s, 1) * w ** -1.5), "max where the formula has min"),
    (lambda s, d, w: min(max(s, 1) ** -0.5, max(s, 1) * w ** -1.5), "d_model^-0.5"),
    (lambda s, d, w: d ** -0.5 * min(max(s, 1) ** -0.5, w * max(s, 1) ** -1.5), "warmup^-1.5 times step"),
    (lambda s, d, w: 0.0 if s == 0 else transformer_lr(s, d, w), "same rate as step 1"),
    (lambda s, d, w: None, "forget to `return`"),
])
def test_rate_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_rate, student, fragment)


def train_step(model, batch, loss_fn, optimizer, scheduler, max_norm, zero_grad=True, clip="before",
               shift=True, step_scheduler=True, train=True, item=True):
    """One training step written out; the defaults make it right, each flag is one mistake."""
    if train:
        model.train()
    if zero_grad:
        optimizer.zero_grad()
    logits = model(batch.src, batch.tgt_in if shift else batch.tgt_out, batch.src_mask, batch.tgt_mask)
    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))
    loss.backward()
    if clip == "before":
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    if clip == "after":
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if step_scheduler:
        scheduler.step()
    return loss.item() if item else loss


@pytest.mark.parametrize("student", [
    train_step,
    lambda *a: reference_train_step(*a)[0],  # course_lib's, which also returns accuracy
], ids=["student", "course_lib"])
def test_train_step_check_accepts_one_right_update(student):
    checks.check_train_step(student)


@pytest.mark.parametrize("student, fragment", [
    (lambda *a: train_step(*a, zero_grad=False), "zero_grad"),
    (lambda *a: train_step(*a, clip=None), "not clipped"),
    (lambda *a: train_step(*a, clip="after"), "before optimizer.step()"),
    (lambda *a: train_step(*a, shift=False), "batch.tgt_in"),
    (lambda *a: train_step(*a, step_scheduler=False), "scheduler.step()"),
    (lambda *a: train_step(*a, train=False), "model.train()"),
    (lambda *a: train_step(*a, item=False), "loss.item()"),
    (lambda *a: None, "forget to `return`"),
])
def test_train_step_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_train_step, student, fragment)


def test_greedy_decode_check_accepts_course_lib():
    checks.check_greedy_decode(lambda model, src, max_len, bos, eos, pad: greedy_decode(
        model, src, max_len, bos_id=bos, eos_id=eos, pad_id=pad))


@pytest.mark.parametrize("student, fragment", [
    (lambda *a: _greedy_variant(*a, causal=False), "causal mask"),
    (lambda *a: _greedy_variant(*a, last=False), "last position"),
    (lambda *a: _greedy_variant(*a, stop=False), "fill it with pad_id"),
    (lambda *a: _greedy_variant(*a, src_padding=False), "source padding"),
    (lambda *a: _greedy_variant(*a)[:, 1:], "<bos>"),
    (lambda *a: _greedy_variant(*a).float(), "torch.long"),
])
def test_greedy_decode_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_greedy_decode, student, fragment)
