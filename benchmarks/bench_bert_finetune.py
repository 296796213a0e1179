"""Notebook 07's BERT fine-tuning against its TF-IDF baseline: test accuracy against minutes of training.

The course's goal (issue 17, figures in README with the machine named): on 2 CPU cores, in
the notebook's `small` profile, the fine-tuned BERT at least 5 points of accuracy above the
TF-IDF + logistic regression baseline on the same held-out reviews, within 3 minutes of
training, over 3 seeds. This script runs the notebook's own code: its cells tagged
``fine-tune`` (imports, model and data, settings, baseline, tokenizing, the Trainer with its
TrainingClock, training, the final prediction), once per seed, with the settings of
``--profile`` and the seed changed. It prints each seed's curve (accuracy after each
evaluation, at the minutes of training behind it) and the final accuracies' mean and spread
against the baseline's. Prints figures, decides nothing.

    python benchmarks/bench_bert_finetune.py [--seeds 0 1 2] [--threads 2] [--profile small] [--set minutes=5 ...]
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import statistics
import time
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "07_bert" / "07_bert.ipynb"
TAG = "fine-tune"


def tagged_cells() -> list[str]:
    """The source of notebook 07's code cells tagged ``fine-tune``, in order."""
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"]
             if c["cell_type"] == "code" and TAG in c["metadata"].get("tags", [])]
    if not cells:
        raise LookupError(f"no code cell tagged {TAG!r} in {NOTEBOOK}")
    return ["".join(c["source"]) for c in cells]


def run(cells: list[str], profile: str, changes: dict, quiet: bool = True) -> dict:
    """Execute ``cells`` as the notebook does, in one namespace, under ``profile``, with
    ``changes`` applied to ``settings`` right after the cell that defines it."""
    import matplotlib
    matplotlib.use("Agg")  # the notebook's figures: drawn, not shown
    from course_lib.data import reviews

    os.environ["COURSE_PROFILE"] = profile
    namespace = {"data": reviews.load_sentiment()}
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        for source in cells:
            exec(compile(source, f"{NOTEBOOK.name} (cell tagged {TAG})", "exec"), namespace)
            if "settings = pick(" in source:  # the settings cell just ran: the next one draws the reviews
                namespace["settings"].update(changes)
    import matplotlib.pyplot as plt
    plt.close("all")
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--profile", default="small", help="which of the notebook's settings")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="try other settings")
    parser.add_argument("--verbose", action="store_true", help="show what the notebook's cells print")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    changes = {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in args.set)}
    cells = tagged_cells()
    finals, baseline = [], None
    for seed in args.seeds:
        started = time.perf_counter()
        ns = run(cells, args.profile, {**changes, "seed": seed}, quiet=not args.verbose)
        baseline = ns["results"]["TF-IDF + logistic regression"][0]
        final = ns["results"]["fine-tuned BERT"][0]
        finals.append(final)
        if seed == args.seeds[0]:
            print(f"notebook 07's {args.profile!r} settings {ns['settings']} with {args.set}; {ns['data'].name}: "
                  f"{len(ns['train'])} training, {len(ns['test'])} test reviews; {ns['describe'](ns['device'])}, "
                  f"{args.threads} threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
            print(f"TF-IDF baseline: accuracy {baseline:.3f} (the same for every seed)")
        curve = "  ".join(f"{minutes:.1f} min {accuracy:.3f}" for minutes, accuracy in ns["clock"].curve)
        print(f"seed {seed}: {ns['trainer'].state.global_step} steps; accuracy {final:.3f} "
              f"({100 * (final - baseline):+.1f} points); curve: {curve}; {time.perf_counter() - started:.0f} s wall",
              flush=True)
    spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
    print(f"fine-tuned BERT over {len(finals)} seeds: {statistics.mean(finals):.3f} +- {spread:.3f} (std), "
          f"{100 * (statistics.mean(finals) - baseline):+.1f} points over the baseline's {baseline:.3f}; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
