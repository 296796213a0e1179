"""course_lib.training against independent implementations.

Oracles and tolerances:
- LabelSmoothingLoss against torch.nn.CrossEntropyLoss(label_smoothing=..., ignore_index=pad):
  values and gradients with respect to the logits, float64, atol 1e-12.
- The schedule against the paper's two regimes written separately (linear warm-up
  lr = step * peak / warmup, then lr = peak * sqrt(warmup / step), peak = (d_model * warmup)^-0.5),
  in float64, rtol 1e-12; the LambdaLR checked on the lr Adam actually used at each update.
- train_step against the same update written out with torch (zero_grad, cross-entropy,
  backward, clip_grad_norm_, Adam.step), parameters equal to atol 1e-12 in float64.
- Language-model training (the same loop on LMBatch windows): evaluate against
  F.cross_entropy over the windows, rel 1e-9 in float64; warmup_cosine against its two
  regimes written out; the lr AdamW used at each update against that formula.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.batching import BatchLoader, lm_batches, lm_windows, make_batch
from course_lib.data.tokenizers import PAD_ID
from course_lib.decoder import Transformer
from course_lib.gpt import GPT, GPTConfig
from course_lib.training import (
    History,
    LabelSmoothingLoss,
    WarmupCosine,
    adamw,
    autocast,
    evaluate,
    fit,
    lm_loss,
    load_checkpoint,
    save_checkpoint,
    train_step,
    transformer_lr,
    transformer_optimizer,
    warmup_cosine,
)

# --- label smoothing ------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_label_smoothing_matches_torch_cross_entropy(smoothing, shape):
    g = torch.Generator().manual_seed(0)
    vocab = 11
    logits = (3 * torch.randn(*shape, vocab, generator=g, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, vocab, shape, generator=g)
    target.view(-1)[::3] = PAD_ID  # some padding, never all of it
    target.view(-1)[1] = 4
    ours = LabelSmoothingLoss(smoothing, pad_id=PAD_ID)(logits, target)
    ref_fn = nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=PAD_ID)
    ref = ref_fn(logits.reshape(-1, vocab), target.reshape(-1))
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-12, rtol=0)
    assert g_ours.reshape(-1, vocab)[target.reshape(-1) == PAD_ID].abs().max() == 0  # pads get no gradient


def test_label_smoothing_without_padding_and_bad_input():
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(6, 9, generator=g, dtype=torch.float64), torch.randint(0, 9, (6,), generator=g)
    torch.testing.assert_close(LabelSmoothingLoss(0.2, pad_id=None)(logits, target),
                               nn.functional.cross_entropy(logits, target, label_smoothing=0.2), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="must match target"):
        LabelSmoothingLoss()(logits, target[:3])
    with pytest.raises(ValueError, match="smoothing"):
        LabelSmoothingLoss(1.0)


def test_label_smoothing_keeps_float32_under_bf16():
    logits = torch.randn(4, 5, 7).to(torch.bfloat16)
    target = torch.randint(1, 7, (4, 5))
    loss = LabelSmoothingLoss(0.1)(logits, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, nn.functional.cross_entropy(
        logits.float().reshape(-1, 7), target.reshape(-1), label_smoothing=0.1, ignore_index=PAD_ID))


# --- the schedule ---------------------------------------------------------------------------

def paper_lr(step, d_model, warmup):
    """The two regimes of the schedule, written separately from the min() formula."""
    peak = (d_model * warmup) ** -0.5
    return step * peak / warmup if step <= warmup else peak * math.sqrt(warmup / step)


@pytest.mark.parametrize("d_model,warmup", [(512, 4000), (64, 100), (8, 1)])
def test_transformer_lr_matches_the_paper(d_model, warmup):
    for step in [1, 2, warmup // 2 + 1, warmup, warmup + 1, 3 * warmup, 100_000]:
        assert transformer_lr(step, d_model, warmup) == pytest.approx(paper_lr(step, d_model, warmup), rel=1e-12)
    assert transformer_lr(0, d_model, warmup) == transformer_lr(1, d_model, warmup)  # no division by zero
    assert transformer_lr(10, d_model, warmup, factor=2.0) == pytest.approx(2 * paper_lr(10, d_model, warmup))
    # the peak is at the end of warm-up
    assert max(transformer_lr(s, d_model, warmup) for s in range(1, 3 * warmup + 2)) == pytest.approx(
        (d_model * warmup) ** -0.5, rel=1e-12)


def test_scheduler_gives_the_nth_update_the_nth_rate():
    model = nn.Linear(3, 2)
    optimizer, scheduler = transformer_optimizer(model, d_model=16, warmup=5, factor=1.5)
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    for n in range(1, 15):
        assert group["lr"] == pytest.approx(1.5 * paper_lr(n, 16, 5), rel=1e-12)  # the lr update n will use
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_scheduled_adam_equals_adam_with_the_rates_set_by_hand():
    torch.manual_seed(0)
    a = nn.Linear(4, 3).double()
    b = copy.deepcopy(a)
    opt_a, sched = transformer_optimizer(a, d_model=32, warmup=3)
    opt_b = torch.optim.Adam(b.parameters(), betas=(0.9, 0.98), eps=1e-9)
    for n in range(1, 8):
        x = torch.randn(5, 4, dtype=torch.float64)
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).square().sum().backward()
        for group in opt_b.param_groups:
            group["lr"] = paper_lr(n, 32, 3)
        opt_a.step(), opt_b.step(), sched.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)


# --- the training step, the loop, checkpoints -----------------------------------------------

def tiny_model(seed=0, vocab=13, dropout=0.0):
    torch.manual_seed(seed)
    return Transformer(vocab, vocab, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                       d_ff=32, dropout=dropout, max_len=32)


def copy_task(n=64, vocab=13, seed=0):
    """Reverse a sequence of 2-6 tokens: ids 4..vocab-1."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        seq = torch.randint(4, vocab, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
        pairs.append((seq, seq[::-1]))
    return pairs


def test_train_step_equals_the_update_written_out():
    model = tiny_model().double()
    reference = copy.deepcopy(model)
    batch = make_batch(*zip(*copy_task(8)))
    loss_fn = LabelSmoothingLoss(0.1)
    optimizer, scheduler = transformer_optimizer(model, 16, warmup=2, factor=50.0)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=50.0 * paper_lr(1, 16, 2), betas=(0.9, 0.98), eps=1e-9)
    for p in model.parameters():  # stale gradients that zero_grad must clear
        p.grad = torch.ones_like(p)
    loss, acc = train_step(model, batch, loss_fn, optimizer, scheduler, max_norm=0.05)

    ref_opt.zero_grad()
    logits = reference(batch.src, batch.tgt_in, batch.src_mask, batch.tgt_mask)
    ref_loss = nn.functional.cross_entropy(logits.reshape(-1, 13), batch.tgt_out.reshape(-1),
                                           label_smoothing=0.1, ignore_index=PAD_ID)
    ref_loss.backward()
    norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
    assert norm > 0.05, "the test must exercise clipping"
    ref_opt.step()

    assert loss == pytest.approx(ref_loss.item(), rel=1e-12)
    keep = batch.tgt_out != PAD_ID
    assert acc == pytest.approx(((logits.argmax(-1) == batch.tgt_out) & keep).sum().item() / keep.sum().item())
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0, msg=name)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(50.0 * paper_lr(2, 16, 2))


def test_fit_learns_a_small_task_and_records_history():
    torch.manual_seed(0)
    model = tiny_model(vocab=9)
    train = BatchLoader(copy_task(256, vocab=9), batch_size=32, seed=0)
    val = BatchLoader(copy_task(64, vocab=9, seed=1), batch_size=64, shuffle=False)
    loss_fn = LabelSmoothingLoss(0.0)
    optimizer, scheduler = transformer_optimizer(model, 16, warmup=30, factor=0.3)
    before, _ = evaluate(model, val, loss_fn)
    history = fit(model, train, optimizer, loss_fn, steps=150, scheduler=scheduler, val_batches=val,
                  eval_every=50, progress=False)
    assert history.step == list(range(1, 151)) and len(history.train_loss) == len(history.lr) == 150
    assert history.val_step == [50, 100, 150] and history.seconds > 0
    assert history.lr[0] == pytest.approx(0.3 * paper_lr(1, 16, 30))
    assert history.val_loss[-1] < 0.6 * before
    assert history.val_acc[-1] > 0.6  # chance is 1/5 per token
    # continuing appends to the same history
    fit(model, train, optimizer, loss_fn, steps=10, scheduler=scheduler, val_batches=val, eval_every=1000,
        progress=False, history=history)
    assert history.step[-1] == 160 and history.val_step[-1] == 160


def test_fit_stops_when_time_is_up():
    model = tiny_model()
    optimizer, scheduler = transformer_optimizer(model, 16, warmup=10)
    history = fit(model, BatchLoader(copy_task(64), 8), optimizer, LabelSmoothingLoss(), steps=10_000,
                  scheduler=scheduler, max_seconds=1e-9, progress=False)
    assert history.steps == 1


def test_fit_reports_a_diverging_loss():
    model = tiny_model()
    with torch.no_grad():
        model.generator.bias.fill_(float("nan"))
    optimizer, _ = transformer_optimizer(model, 16)
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(model, BatchLoader(copy_task(16), 8), optimizer, LabelSmoothingLoss(), steps=3, progress=False)


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(dropout=0.0)
    optimizer, scheduler = transformer_optimizer(model, 16, warmup=4)
    train = list(BatchLoader(copy_task(32), 8, seed=0))
    loss_fn = LabelSmoothingLoss()
    history = fit(model, train[:2], optimizer, loss_fn, steps=3, scheduler=scheduler, progress=False)
    save_checkpoint(tmp_path / "ckpt" / "m.pt", model, optimizer, scheduler, history, d_model=16, note="x")

    clone = tiny_model(seed=1)
    opt2, sched2 = transformer_optimizer(clone, 16, warmup=4)
    history2, extra = load_checkpoint(tmp_path / "ckpt" / "m.pt", clone, opt2, sched2)
    assert extra == {"d_model": 16, "note": "x"} and history2 == history
    assert opt2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    # the next update is the same for both
    for m, opt, sched in ((model, optimizer, scheduler), (clone, opt2, sched2)):
        train_step(m, train[3], loss_fn, opt, sched)
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    # weights alone
    save_checkpoint(tmp_path / "w.pt", model)
    assert load_checkpoint(tmp_path / "w.pt", tiny_model(seed=2)) == (None, {})


def test_autocast_is_a_no_op_on_cpu():
    with autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert isinstance(History().step, list) and History().steps == 0


# --- language-model training: the same loop on windows of one text ------------------------

def tiny_gpt(vocab=20, max_len=8, d_model=16, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, max_len=max_len, num_layers=1, num_heads=2, d_model=d_model))


def test_lm_evaluate_is_the_mean_cross_entropy_over_windows():
    model = tiny_gpt().double()
    data = torch.randint(20, (8 * 6 + 1,), generator=torch.Generator().manual_seed(0))
    windows, targets = data[:48].view(6, 8), data[1:49].view(6, 8)
    expected = F.cross_entropy(model(windows)[0].flatten(0, 1), targets.flatten()).item()
    loss, acc = evaluate(model, lm_windows(data, 8, batch_size=4), lm_loss)
    assert math.isclose(loss, expected, rel_tol=1e-9)
    assert acc == pytest.approx((model(windows)[0].argmax(-1) == targets).double().mean().item())
    assert model.training  # evaluate restores the mode


def paper_free_cosine(step, total, warmup, min_ratio=0.1):
    """warmup_cosine's two regimes written out separately."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(step - warmup, total - warmup) / (total - warmup)
    return min_ratio + (1 - min_ratio) * (math.cos(math.pi * t) + 1) / 2


@pytest.mark.parametrize("step", [0, 4, 9, 10, 37, 55, 99, 100, 150])
def test_warmup_cosine_matches_its_formula(step):
    assert warmup_cosine(step, 100, 10) == pytest.approx(paper_free_cosine(step, 100, 10), rel=1e-12)


def test_warmup_cosine_scheduler_sets_adamw_lr_at_each_update():
    model = tiny_gpt()
    optimizer = adamw(model, lr=0.01)
    scheduler = WarmupCosine(optimizer, total=20, warmup=5)
    data = torch.arange(20).repeat(10)
    history = fit(model, lm_batches(data, 8, 4), optimizer, lm_loss, steps=20, scheduler=scheduler, progress=False)
    assert history.lr == pytest.approx([0.01 * paper_free_cosine(i, 20, 5) for i in range(20)], rel=1e-12)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all((id(p) in decayed) == (p.dim() >= 2) for p in model.parameters())


def test_lm_fit_learns_a_repeating_sequence():
    model = tiny_gpt(vocab=10, max_len=16, d_model=32)
    data = torch.arange(10).repeat(200)
    optimizer = adamw(model, lr=3e-3)
    history = fit(model, lm_batches(data[:1600], 16, 8), optimizer, lm_loss, steps=150,
                  scheduler=WarmupCosine(optimizer, 150, 10), val_batches=lm_windows(data[1600:], 16),
                  eval_every=50, progress=False)
    assert history.steps == 150 and history.val_step == [50, 100, 150]
    assert history.val_loss[-1] < 0.05 < history.train_loss[0]
    assert history.val_acc[-1] == 1.0


def test_fit_with_a_time_budget_fits_the_cosine_to_it():
    model = tiny_gpt()
    optimizer = adamw(model, lr=1e-3)
    scheduler = WarmupCosine(optimizer, total=10 ** 6, warmup=2)
    history = fit(model, lm_batches(torch.arange(20).repeat(10), 8, 4), optimizer, lm_loss, steps=10 ** 6,
                  scheduler=scheduler, max_seconds=0.5, progress=False)
    assert scheduler.total < 10 ** 6 and history.steps <= scheduler.total + 20


@pytest.mark.parametrize("batches", [[], iter([])], ids=["empty list", "used-up generator"])
def test_fit_refuses_a_loader_without_batches(batches):
    model = tiny_gpt()
    with pytest.raises(ValueError, match="yielded no batch"):
        fit(model, batches, adamw(model, 1e-3), lm_loss, steps=5, max_seconds=1.0, progress=False)


def test_fit_refuses_a_one_shot_generator_once_it_is_used_up():
    model = tiny_gpt()
    once = (b for _, b in zip(range(2), lm_batches(torch.arange(20).repeat(5), 8, 2)))
    with pytest.raises(ValueError, match="used-up generator"):
        fit(model, once, adamw(model, 1e-3), lm_loss, steps=5, progress=False)
