"""How low does course_lib's GPT get on Jane Austen in a fixed training time? (notebook 08_gpt)

The goal of the course (figures in README, with the machine named): on 2 CPU cores, a
4-layer, 4-head, 128-wide character model with context 64 and batch 12 reaches a validation
loss of at most 1.70 nats per character within 60 s of training; on one GPU, a 6-layer,
6-head, 384-wide model with context 256 reaches at most 1.3 within 5 minutes.

Training time excludes the periodic validation estimates (printed as they come, on 8 batches
of the validation split, so that a run stopped early still shows how far it got); the loss
reported at the end is on the whole validation split (the last 10% of the six novels). Prints
figures, decides nothing.

    python benchmarks/bench_gpt_train.py                   # the CPU goal: 60 s, 2 threads
    python benchmarks/bench_gpt_train.py --profile full    # the GPU goal: 300 s
    python benchmarks/bench_gpt_train.py --seconds 30 --lr 3e-3
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import time

import torch

from course_lib import device as devices
from course_lib.batching import lm_batches, lm_windows
from course_lib.data import austen
from course_lib.gpt import GPT, GPTConfig
from course_lib.training import WarmupCosine, adamw, evaluate, fit, lm_loss

SETUPS = {  # (config, batch size, learning rate, seconds)
    "small": (dict(max_len=64, num_layers=4, num_heads=4, d_model=128), 12, 6e-3, 60),
    "full": (dict(max_len=256, num_layers=6, num_heads=6, d_model=384, dropout=0.1), 64, 1e-3, 300),
}


# Dense bf16 tensor-core peaks from the vendors' data sheets (FLOP/s), for the MFU figure.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def mfu_line(model: GPT, tokens_per_second: float, device: torch.device) -> str:
    """Model FLOPs per second, and their share of the GPU's peak (model FLOPs utilization).

    A training token costs 6 FLOPs per parameter (forward and backward) plus the attention
    scores and sums, 12 * layers * d_model * context (the estimate of the PaLM paper)."""
    c = model.config
    flops = tokens_per_second * (6 * model.num_parameters(embeddings=False) + 12 * c.num_layers * c.d_model * c.max_len)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = next((value for key, value in PEAK_BF16.items() if key in name), None)
    share = f"MFU {flops / peak:.1%} of the {name} bf16 peak" if peak else "MFU: no known peak for this device"
    return f"{flops / 1e12:.2f} TFLOP/s of model FLOPs; {share}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(SETUPS), default=None,
                        help="model size (default: full on a GPU, small elsewhere)")
    parser.add_argument("--seconds", type=float, default=None, help="training time budget")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=30, help="warmup steps")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between validation estimates (default: 500 on a GPU; none on a CPU, where "
                             "each estimate leaves the next steps slower and the budget is a minute)")
    args = parser.parse_args()

    device = devices.get_device()
    profile = args.profile or ("full" if device.type == "cuda" else "small")
    eval_every = args.eval_every or (500 if device.type == "cuda" else 10 ** 9)
    sizes, batch_size, lr, seconds = SETUPS[profile]
    batch_size, lr, seconds = args.batch_size or batch_size, args.lr or lr, args.seconds or seconds
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    tokenizer, train_data, val_data = austen.load_char_data()
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, fast=True, **sizes)).to(device)
    load = os.getloadavg()[0]
    print(f"device: {devices.describe(device)}, {os.cpu_count()} CPUs, load average {load:.1f} before training")
    print(f"model: {sizes}, {model.num_parameters() / 1e6:.2f} M parameters; batch {batch_size}, lr {lr}")

    def train(model: GPT, steps: int, max_seconds: float | None = None, on_eval=None):
        optimizer = adamw(model, lr)
        # a small estimate (256 windows): a big one costs seconds and leaves the next steps slower
        val_batches = lm_windows(val_data, model.config.max_len, batch_size=64, max_batches=4) if on_eval else None
        return fit(model, lm_batches(train_data, model.config.max_len, batch_size, seed=args.seed), optimizer,
                   lm_loss, steps, scheduler=WarmupCosine(optimizer, total=steps, warmup=args.warmup),
                   amp=device.type == "cuda", max_seconds=max_seconds, progress=False, val_batches=val_batches,
                   eval_every=eval_every, on_eval=on_eval)

    def report(step: int, val_loss: float) -> None:
        print(f"step {step}: validation loss {val_loss:.3f} (256 windows), {time.perf_counter() - start:.0f} s wall",
              flush=True)

    # A few untimed steps on a copy first: the first calls allocate and pick kernels.
    train(copy.deepcopy(model), steps=5)

    start = time.perf_counter()
    history = train(model, steps=10 ** 6, max_seconds=seconds, on_eval=report)
    wall = time.perf_counter() - start
    t0 = time.perf_counter()
    val, _ = evaluate(model, lm_windows(val_data, model.config.max_len, batch_size=256), lm_loss,
                      amp=device.type == "cuda")
    eval_seconds = time.perf_counter() - t0
    print(f"steps: {history.steps} in {history.seconds:.1f} s of training ({wall:.1f} s wall), "
          f"{1000 * history.seconds / history.steps:.1f} ms/step")
    tokens_per_second = history.steps * batch_size * model.config.max_len / history.seconds
    print(f"throughput: {tokens_per_second:,.0f} tokens/s, {mfu_line(model, tokens_per_second, device)}")
    print(f"train loss (last 50 steps): {sum(history.train_loss[-50:]) / len(history.train_loss[-50:]):.3f}")
    print(f"validation loss: {val:.3f} nats/char = {val / math.log(2):.3f} bits/char "
          f"(whole validation split, {eval_seconds:.1f} s); goal <= {1.70 if profile == 'small' else 1.3}")
    print(f"load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
