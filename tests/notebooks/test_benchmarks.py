"""Benchmarks that run a notebook's own code keep working when the notebook changes.

bench_bert_finetune executes notebook 07's cells tagged ``fine-tune``; this runs it at the
smallest size (a handful of reviews, one step) so that a renamed variable, a lost tag or a
cell that no longer stands on its own fails here rather than on the next measurement.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_bert_finetune_runs_the_notebooks_tagged_cells():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_bert_finetune.py"), "--profile",
                           "smallest", "--seeds", "0", "1", "--threads", "1"], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("TF-IDF baseline: accuracy 0.") for line in lines), done.stdout
    seeds = [line for line in lines if line.startswith("seed ")]
    assert [line.split(":")[0] for line in seeds] == ["seed 0", "seed 1"], done.stdout
    assert all("curve: 0.0 min" in line for line in seeds), done.stdout  # eval_on_start: the curve starts at 0
    assert "over 2 seeds" in lines[-1], done.stdout
