"""BERT fine-tuning throughput: fp32 with eager attention vs bf16 autocast with fused attention.

Notebook 07_bert fine-tunes a BERT for sentiment with the Hugging Face ``Trainer``; this
measures the training steps underneath it (forward, loss, backward, AdamW step) on the same
model, the same reviews and the same batches, side by side in one run:
- fp32, ``attn_implementation="eager"`` (softmax(QK^T)V written out);
- bf16 autocast (course_lib.training.autocast: on CUDA only), ``attn_implementation="sdpa"``
  (torch's fused attention kernels).
Prints examples/s of each and the ratio (goal of issue 8, on a GPU: at least 2x). The model is
``assets.resolve("minilm")``: bert-base-cased where the hub answers, else the packaged MiniLM;
``--model bert-base-random`` measures BERT-base's shape (12 layers x 768) randomly initialised
instead: throughput needs no pretrained weights (the tokenizer is still MiniLM's, whose uncased
vocabulary of 30,522 is BERT-base's).
Sizes follow course_lib.device.run_profile(): "full" (GPU) batch 32 x 256 tokens; "small"
(CPU) 8 x 128; "smallest" 2 x 32, only to show that the script runs. Prints figures, decides nothing.

    python benchmarks/bench_bert_throughput.py [--steps 20] [--threads 2] [--model bert-base-random]
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from course_lib.data import assets, reviews
from course_lib.device import describe, get_device, pick, run_profile
from course_lib.training import autocast


def throughput(source, batches: list[dict], device: torch.device, attention: str, bf16: bool,
               random_init: bool = False) -> float:
    """Examples per second of training steps on ``batches`` (after two untimed warm-up steps);
    ``random_init``: a randomly initialised BERT-base instead of ``source``'s weights."""
    torch.manual_seed(0)
    if random_init:
        model = AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2), attn_implementation=attention)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, attn_implementation=attention)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(batch: dict) -> None:
        with autocast(device, bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:
        step(batch)
    sync()
    start = time.perf_counter()
    for batch in batches[2:]:
        step(batch)
    sync()
    return sum(len(b["labels"]) for b in batches[2:]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default by profile)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--model", choices=("pretrained", "bert-base-random"), default="pretrained")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = get_device()
    profile = run_profile(device)
    batch_size, length, steps = pick(profile, full=(32, 256, 30), small=(8, 128, 6), smallest=(2, 32, 2))
    steps = args.steps or steps

    source = assets.resolve("minilm")
    tokenizer = AutoTokenizer.from_pretrained(source)
    data = reviews.load_sentiment().train
    count = batch_size * (steps + 2)
    texts, labels = data.texts[:count], data.labels[:count]
    encoded = tokenizer(texts, truncation=True, max_length=length, padding="max_length", return_tensors="pt")
    batches = [{"input_ids": encoded["input_ids"][i:i + batch_size].to(device),
                "attention_mask": encoded["attention_mask"][i:i + batch_size].to(device),
                "labels": torch.tensor(labels[i:i + batch_size], device=device)}
               for i in range(0, count, batch_size)]

    random_init = args.model == "bert-base-random"
    model_name = "BERT-base config, randomly initialised" if random_init else source
    print(f"device: {describe(device)}, {os.cpu_count()} CPUs, profile {profile}; model {model_name}", flush=True)
    print(f"batch {batch_size} x {length} tokens, {steps} timed training steps")
    fp32 = throughput(source, batches, device, "eager", bf16=False, random_init=random_init)
    print(f"fp32, eager attention:      {fp32:8.1f} examples/s", flush=True)
    fast = throughput(source, batches, device, "sdpa", bf16=True, random_init=random_init)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32 (autocast is CUDA-only)"
    print(f"{precision}, fused (sdpa): {fast:8.1f} examples/s")
    print(f"ratio: {fast / fp32:.2f}x (goal on a GPU: >= 2x)")


if __name__ == "__main__":
    main()
