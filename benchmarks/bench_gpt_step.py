"""The course's GPT training step against nanoGPT's, on the same model size and batch (notebook 08_gpt).

Three loops train the same character model on Jane Austen (bench_gpt_train's ``small`` setup
on a CPU, ``full`` on a GPU: sizes, batch and learning rate), side by side in one run:
- **nanoGPT**: Karpathy's ``model.py`` (benchmarks/nanogpt/, MIT, unchanged) with the loop of
  its ``train.py``: random windows, forward with targets, backward, clip to 1.0, AdamW as its
  ``configure_optimizers`` makes it, ``zero_grad(set_to_none=True)``, the learning rate set by hand;
- **course model, nanoGPT's loop**: course_lib's ``GPT`` in that same loop, which separates the
  model's cost from the loop's;
- **course**: course_lib's ``GPT`` trained by ``course_lib.training.fit``, as notebook 08 does
  (``lm_batches``, ``adamw``, ``WarmupCosine``, ``lm_loss``).
The rounds alternate between the three (``--rounds`` of ``--steps`` each, after untimed warm-up
steps), so that a change in the machine's load touches all of them; prints the median
milliseconds per step of each and the ratios. The goal (issue 17): the course's step at least
as fast as nanoGPT's. Prints figures, decides nothing.

    python benchmarks/bench_gpt_step.py [--rounds 5] [--steps 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from bench_gpt_train import SETUPS
from nanogpt.model import GPT as NanoGPT
from nanogpt.model import GPTConfig as NanoConfig

from course_lib import device as devices
from course_lib.batching import lm_batches
from course_lib.data import austen
from course_lib.gpt import GPT, GPTConfig
from course_lib.training import WarmupCosine, adamw, autocast, fit, lm_loss


def nano_loop(model: torch.nn.Module, data: torch.Tensor, block: int, batch: int, lr: float,
              device: torch.device, course_model: bool):
    """nanoGPT's train.py loop, as a function that runs ``steps`` more steps when called."""
    if course_model:
        optimizer = adamw(model, lr, weight_decay=0.1, betas=(0.9, 0.95))
    else:
        optimizer = model.configure_optimizers(0.1, lr, (0.9, 0.95), device.type)
    generator = torch.Generator().manual_seed(0)

    def get_batch():  # train.py's get_batch, from a tensor instead of a memmap
        ix = torch.randint(len(data) - block, (batch,), generator=generator)
        x = torch.stack([data[i:i + block] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    x, y = get_batch()

    def run(steps: int) -> None:
        nonlocal x, y
        for _ in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, device.type == "cuda"):
                if course_model:
                    loss = lm_loss(model(x)[0], y)
                else:
                    _, loss = model(x, y)
            x, y = get_batch()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss.item()  # train.py reads the loss every log_interval steps; a GPU sync at the end
    return run


def course_loop(model: GPT, data: torch.Tensor, block: int, batch: int, lr: float, device: torch.device):
    """course_lib's fit, as notebook 08 calls it; each call continues the same history."""
    optimizer = adamw(model, lr)
    scheduler = WarmupCosine(optimizer, total=10 ** 6, warmup=30)
    batches = lm_batches(data, block, batch)
    history = None

    def run(steps: int) -> None:
        nonlocal history
        history = fit(model, batches, optimizer, lm_loss, steps, scheduler=scheduler, amp=device.type == "cuda",
                      progress=False, history=history)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="steps per round")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    device = devices.get_device()
    torch.set_num_threads(args.threads)
    sizes, batch, lr, _ = SETUPS["full" if device.type == "cuda" else "small"]
    tokenizer, train_data, _ = austen.load_char_data()
    block = sizes["max_len"]

    torch.manual_seed(0)
    nano = NanoGPT(NanoConfig(block_size=block, vocab_size=tokenizer.vocab_size, n_layer=sizes["num_layers"],
                              n_head=sizes["num_heads"], n_embd=sizes["d_model"], dropout=sizes.get("dropout", 0.0),
                              bias=True)).to(device)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, fast=True, **sizes)
    loops = {
        "nanoGPT": nano_loop(nano, train_data, block, batch, lr, device, course_model=False),
        "course model, nanoGPT's loop": nano_loop(GPT(config).to(device), train_data, block, batch, lr, device,
                                                  course_model=True),
        "course (fit)": course_loop(GPT(config).to(device), train_data, block, batch, lr, device),
    }
    print(f"device: {devices.describe(device)}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}; "
          f"torch {torch.__version__}")
    print(f"model {sizes}, batch {batch}, vocabulary {tokenizer.vocab_size}; {args.rounds} rounds of {args.steps} "
          f"steps each, alternating")
    times = {name: [] for name in loops}
    for run in loops.values():
        run(10)  # untimed: the first steps allocate and pick kernels
    for _ in range(args.rounds):
        for name, run in loops.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(args.steps)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(1000 * (time.perf_counter() - start) / args.steps)
    base = statistics.median(times["nanoGPT"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:30} {median:6.2f} ms/step (rounds: {' '.join(f'{v:.1f}' for v in values)}), "
              f"{base / median:.2f}x nanoGPT's speed")
    print(f"load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
