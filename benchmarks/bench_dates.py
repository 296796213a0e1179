"""Notebook 06's dates task, timed: human-written dates to ISO dates (notebook 06_training).

The goal of the course (figures in README, with the machine named): at least 99% exact match
on the 1,000 held-out dates, trained in at most 90 s on 2 CPU cores. This script trains the
notebook's model with the notebook's settings (its "small" profile, the one a CPU gets) and
prints the training time and the exact match of greedy decoding. Prints figures, decides nothing.

    python benchmarks/bench_dates.py [--threads 2] [--steps 2200]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from course_lib import device as devices
from course_lib.batching import BatchLoader, make_batch
from course_lib.data.dates import date_splits
from course_lib.data.tokenizers import PAD_ID, CharTokenizer
from course_lib.decoder import Transformer
from course_lib.decoding import greedy_decode
from course_lib.training import LabelSmoothingLoss, fit, transformer_optimizer

# notebook 06's DATES["small"]
SIZES = dict(train=20000, d_model=64, heads=4, layers=2, d_ff=128, batch=64, steps=2200, warmup=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=SIZES["steps"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = devices.get_device()

    dates = date_splits({"train": SIZES["train"], "val": 500, "test": 1000}, seed=0)
    src_tok = CharTokenizer.from_texts(human for human, _ in dates["train"])
    tgt_tok = CharTokenizer("0123456789-")
    ids = {name: [(src_tok.encode(h), tgt_tok.encode(i)) for h, i in split] for name, split in dates.items()}
    train = BatchLoader(ids["train"], batch_size=SIZES["batch"], shuffle=True, seed=0)

    torch.manual_seed(0)
    model = Transformer(src_tok.vocab_size, tgt_tok.vocab_size, d_model=SIZES["d_model"], num_heads=SIZES["heads"],
                        num_encoder_layers=SIZES["layers"], num_decoder_layers=SIZES["layers"],
                        d_ff=SIZES["d_ff"], dropout=0.0, max_len=64, fast=True).to(device)
    optimizer, scheduler = transformer_optimizer(model, SIZES["d_model"], warmup=SIZES["warmup"], factor=0.5)
    print(f"device: {devices.describe(device)}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} before training; {sum(p.numel() for p in model.parameters()):,} parameters")
    history = fit(model, train, optimizer, LabelSmoothingLoss(smoothing=0.1, pad_id=PAD_ID), steps=args.steps,
                  scheduler=scheduler, progress=False)

    started = time.perf_counter()
    model.eval()
    humans = [h for h, _ in dates["test"]]
    with torch.no_grad():
        src = make_batch([src_tok.encode(h) for h in humans], [[]] * len(humans)).src.to(device)
        predicted = [tgt_tok.decode(row) for row in greedy_decode(model, src, max_len=12)]
    exact = sum(p == iso for p, (_, iso) in zip(predicted, dates["test"])) / len(predicted)
    print(f"training: {history.steps} steps in {history.seconds:.1f} s ({1000 * history.seconds / history.steps:.1f} "
          f"ms/step); goal <= 90 s on 2 CPU cores")
    print(f"exact match on {len(predicted)} held-out dates: {exact:.1%} (greedy, decoded in "
          f"{time.perf_counter() - started:.1f} s); goal >= 99%")
    print(f"load average now: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
