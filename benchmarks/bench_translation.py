"""Notebook 06's English-Spanish translation on a student's CPU: BLEU against training time.

The course's goal (figures in README, with the machine named): at least BLEU 10 (sacreBLEU,
chrF reported too) on held-out verses after 5 minutes of training on 2 CPU cores. This
script trains the notebook's `small` settings (read from the notebook's ``MT``) once per
time budget, each run from scratch with its learning-rate schedule fitted to
that budget, and prints greedy BLEU and chrF on the same held-out verses (whole books that
training never sees: course_lib.data.bible.TEST_BOOKS). Prints figures, decides nothing.

    python benchmarks/bench_translation.py [--minutes 1 2 5 10] [--threads 2] [--set dropout=0.1 ...]
"""
from __future__ import annotations

import argparse
import ast
import json
import random
import time
from pathlib import Path

import sacrebleu
import torch

from course_lib.batching import BatchLoader
from course_lib.data import bible
from course_lib.data.tokenizers import PAD_ID, BPETokenizer
from course_lib.decoder import Transformer
from course_lib.decoding import translate
from course_lib.device import describe, get_device
from course_lib.training import LabelSmoothingLoss, WarmupCosine, adamw, fit

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "06_training" / "06_training.ipynb"


def notebook_config(profile: str = "small") -> dict:
    """Notebook 06's ``MT[profile]``, read from the notebook: its settings have one copy."""
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] != "code" or "MT = pick(" not in "".join(cell["source"]):
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MT":
                chosen = next(k.value for k in node.value.keywords if k.arg == profile)
                return {k.arg: ast.literal_eval(k.value) for k in chosen.keywords}
    raise LookupError(f"no MT = pick(...) in {NOTEBOOK}")


def data(config: dict, test: int | None):
    """The shared BPE, the training pairs (ids) and the held-out test verses."""
    verses = bible.split_by_book(bible.load_pairs())
    sample = random.Random(0).sample(verses["train"], min(config["bpe_pairs"], len(verses["train"])))
    bpe = BPETokenizer.train((t for p in sample for t in (p.en, p.es)), vocab_size=config["vocab"])
    src = bpe.encode_batch([p.en for p in verses["train"]])
    tgt = bpe.encode_batch([p.es for p in verses["train"]])
    train = [(s, t) for s, t in zip(src, tgt) if max(len(s), len(t)) <= config["max_tokens"]]
    tests = [p for p in verses["test"] if max(len(bpe.encode(p.en)), len(bpe.encode(p.es))) <= config["max_tokens"]]
    return bpe, train, random.Random(1).sample(tests, min(test, len(tests))) if test else tests


def model_for(config: dict, vocab: int) -> Transformer:
    return Transformer(vocab, vocab, d_model=config["d_model"], num_heads=config["heads"],
                        num_encoder_layers=config["layers"], num_decoder_layers=config["layers"],
                        d_ff=config["d_ff"], dropout=config["dropout"], max_len=256, fast=True,
                        share_embeddings=True)


def train(config: dict, bpe: BPETokenizer, pairs, seconds: float, device: torch.device,
          seed: int = 0) -> tuple[Transformer, int]:
    torch.manual_seed(seed)
    model = model_for(config, bpe.vocab_size).to(device)
    optimizer = adamw(model, config["lr"], weight_decay=0.01, betas=(0.9, 0.98))
    scheduler = WarmupCosine(optimizer, total=config["steps"], warmup=config["warmup"])
    loader = BatchLoader(pairs, batch_size=512, max_tokens=config["batch_tokens"], seed=seed)
    history = fit(model, loader, optimizer, LabelSmoothingLoss(0.1, pad_id=PAD_ID), steps=config["steps"],
                  scheduler=scheduler, max_seconds=seconds, progress=False, amp=device.type == "cuda")
    return model, history.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 5, 10], help="training budgets")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--profile", default="small", help="which of the notebook's MT profiles")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="try other settings")
    args = parser.parse_args()
    config = notebook_config(args.profile)
    device = get_device()
    for item in args.set:
        key, value = item.split("=", 1)
        config[key] = type(config[key])(value)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    bpe, pairs, tests = data(config, config["test"])
    print(f"notebook 06's {args.profile!r} settings {config}")
    print(f"{len(pairs)} training pairs, {len(tests)} test verses ({', '.join(bible.TEST_BOOKS)}), "
          f"BPE of {bpe.vocab_size} tokens, data ready in {time.perf_counter() - started:.0f} s; "
          f"{describe(device)}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'minutes':>7} {'steps':>6} {'BLEU':>5} {'chrF':>5}  first test verse")
    for minutes in args.minutes:
        model, steps = train(config, bpe, pairs, 60 * minutes, device)
        hypotheses = translate(model, bpe, [p.en for p in tests])
        refs = [[p.es for p in tests]]
        bleu, chrf = sacrebleu.corpus_bleu(hypotheses, refs).score, sacrebleu.corpus_chrf(hypotheses, refs).score
        print(f"{minutes:7g} {steps:6d} {bleu:5.1f} {chrf:5.1f}  {hypotheses[0]!r}", flush=True)
    print(f"reference for the first verse: {tests[0].es!r}")


if __name__ == "__main__":
    main()
