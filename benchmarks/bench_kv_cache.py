"""KV-cached generation vs recomputing the prefix, and course_lib's generate vs transformers'.

On the same weights (a randomly initialized Hugging Face GPT2LMHeadModel with its tanh GELU, copied
into course_lib.gpt.GPT with GPT.from_gpt2, so both compute the same function), greedy
decoding of N new tokens after a 16-token prompt, batch 1, float32, measured side by side:
- course_lib.sampling.generate with the KV cache (one new position per step) and without it
  (the whole prefix every step): tokens/s and the speed-up (goal, issue 8: at least 5x at
  512 new tokens);
- transformers' generate(do_sample=False), with its cache: tokens/s, the ratio of the times, and whether
  the tokens are the same (random weights give nearly tied logits, so the last bits of
  rounding can flip an argmax: a difference late in the sequence is not an error).
Sizes follow course_lib.device.run_profile(): "full" (GPU) is GPT-2 small, 12 layers x 768,
vocabulary 50257; "small" (CPU) 4 layers x 128, vocabulary 512; "smallest" 2 x 64.

    python benchmarks/bench_kv_cache.py [--device cuda] [--new 64 128 256 512 1024] [--threads 1]
"""
from __future__ import annotations

import argparse
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from course_lib.device import describe, get_device, pick, run_profile
from course_lib.efficient import time_call
from course_lib.gpt import GPT
from course_lib.sampling import generate

PROMPT = 16


def timed(fn, device: torch.device) -> tuple[torch.Tensor, float]:
    """``fn()``'s result and the seconds of that one call."""
    out = []
    seconds = time_call(lambda: out.append(fn()), device, repeats=1, warmup=0)
    return out[0], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(get_device()))
    parser.add_argument("--new", type=int, nargs="*", help="numbers of new tokens (default: by run profile)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: on a shared machine, threads waiting for each other "
                             "would decide the times)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    profile = run_profile(device)
    size = pick(profile, full=dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, new=[64, 128, 256, 512, 1024]),
                small=dict(n_layer=4, n_embd=128, n_head=4, vocab_size=512, new=[64, 128, 256, 512]),
                smallest=dict(n_layer=2, n_embd=64, n_head=2, vocab_size=256, new=[32, 64]))
    new = args.new or size.pop("new")
    size.pop("new", None)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_positions=PROMPT + max(new), bos_token_id=0,
                                    eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    **size)).to(device).eval()
    hf.generation_config.eos_token_id = None  # always the full number of new tokens
    hf.generation_config.pad_token_id = 0
    ours = GPT.from_gpt2(hf).to(device).eval()
    prompt = torch.randint(0, size["vocab_size"], (1, PROMPT), device=device)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"device: {describe(device)}, torch {torch.__version__}, profile {profile}{load}")
    print(f"model: {size}, {ours.num_parameters() / 1e6:.1f} M parameters; prompt {PROMPT} tokens, batch 1, "
          f"greedy, float32")

    def run_hf(n: int) -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    for warm in (lambda: generate(ours, prompt, 4, temperature=0),
                 lambda: generate(ours, prompt, 4, temperature=0, use_cache=False), lambda: run_hf(4)):
        warm()
    print(f"{'new':>6} | {'cached tok/s':>12} {'recompute tok/s':>15} {'speed-up':>9} | "
          f"{'transformers tok/s':>18} {'time theirs/ours':>16} {'same tokens':>18}")
    for n in new:
        cached, t_cached = timed(lambda: generate(ours, prompt, n, temperature=0), device)
        _, t_full = timed(lambda: generate(ours, prompt, n, temperature=0, use_cache=False), device)
        theirs, t_hf = timed(lambda: run_hf(n), device)
        differ = (cached[0] != theirs[0]).nonzero()
        same = "yes" if len(differ) == 0 else f"up to token {int(differ[0]) - PROMPT}"
        print(f"{n:>6} | {n / t_cached:12.1f} {n / t_full:15.1f} {t_full / t_cached:8.1f}x | "
              f"{n / t_hf:18.1f} {t_hf / t_cached:15.2f}x {same:>18}", flush=True)


if __name__ == "__main__":
    main()
