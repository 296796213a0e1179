"""What attention costs as the sequence grows: time and peak memory of one forward pass.

Side by side, from one run, on the same (batch, heads, seq, d_head) inputs:
- naive: course_lib's scaled_dot_product_attention (the (seq, seq) scores and weights exist);
- sdpa: torch.nn.functional.scaled_dot_product_attention, whichever kernel torch picks
  (the one that ran is printed: flash / mem-efficient / cudnn / math, or flash (cpu));
- linear: course_lib.efficient.linear_attention (elu + 1 feature map);
- local: course_lib.efficient.sliding_window_attention, 128 positions on each side;
and the ratios naive / each. On a GPU, a second table forces each SDPA backend in turn
with torch.nn.attention.sdpa_kernel. Forward only, no gradients; time is the fastest of
--repeats calls; peak memory is what the call held above its inputs
(course_lib.efficient.peak_memory: torch.cuda.max_memory_allocated on a GPU, the profiler's
record of torch's CPU allocator on a CPU). Sizes follow course_lib.device.run_profile():
"full" on a GPU (bfloat16, up to 64k positions), "small" on a CPU (float32), "smallest" in CI.

    python benchmarks/bench_attention_cost.py [--device cuda] [--repeats 5] [--lengths 512 1024] [--threads 1]
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from course_lib.attention import scaled_dot_product_attention
from course_lib.device import describe, get_device, pick, run_profile
from course_lib.efficient import linear_attention, peak_memory, sdpa_backend, sliding_window_attention, time_call

WINDOW = 128
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "mem-efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def sizes(profile: str) -> dict:
    return pick(profile,
                full=dict(batch=1, heads=16, d_head=64, lengths=[1024, 2048, 4096, 8192, 16384, 32768, 65536],
                          naive_max=16384, dtype=torch.bfloat16),
                small=dict(batch=1, heads=4, d_head=64, lengths=[256, 512, 1024, 2048, 4096],
                           naive_max=4096, dtype=torch.float32),
                smallest=dict(batch=1, heads=2, d_head=32, lengths=[128, 256, 512], naive_max=512,
                              dtype=torch.float32))


def cost(fn, device: torch.device, repeats: int) -> tuple[float, float] | None:
    """(milliseconds, MiB), or None when the call runs out of memory or the backend refuses."""
    try:
        with torch.no_grad():
            return time_call(fn, device, repeats) * 1e3, peak_memory(fn, device) / 2**20
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower() \
                or "No available kernel" in str(error) or "No viable backend" in str(error):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return None
        raise


def fmt(x: float | None, width: int = 9, digits: int = 2) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:{width}.{digits}f}"


def ratio(a: tuple | None, b: tuple | None, i: int) -> str:
    return fmt(None if a is None or b is None or b[i] == 0 else a[i] / b[i], 8, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=str(get_device()))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="*", help="sequence lengths (default: by run profile)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: on a shared machine, threads waiting for each other "
                             "would decide the times)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda"):
        device = torch.device("cpu")  # peak memory is measured on cpu and cuda only
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    profile = run_profile(device)
    s = sizes(profile)
    lengths = args.lengths or s["lengths"]
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"device: {describe(device)}, torch {torch.__version__}, profile {profile}{load}")
    print(f"{str(s['dtype']).removeprefix('torch.')}, batch {s['batch']} x heads {s['heads']} x d_head "
          f"{s['d_head']}, forward only, fastest of {args.repeats}; local window {WINDOW} on each side; "
          f"naive up to {s['naive_max']} positions")

    rows = []
    print(f"\n{'seq':>6} {'sdpa kernel':>13} | {'time ms:':>9} {'naive':>9} {'sdpa':>9} {'linear':>9} {'local':>9}"
          f" | {'naive/':>8} {'naive/':>8} {'naive/':>8} | {'MiB:':>5} {'naive':>9} {'sdpa':>9} {'linear':>9}"
          f" {'local':>9} | {'naive/':>8} {'naive/':>8} {'naive/':>8}")
    print(f"{'':>6} {'':>13} | {'':>9} {'':>9} {'':>9} {'':>9} {'':>9} | {'sdpa':>8} {'linear':>8} {'local':>8}"
          f" | {'':>5} {'':>9} {'':>9} {'':>9} {'':>9} | {'sdpa':>8} {'linear':>8} {'local':>8}")
    for seq in lengths:
        torch.manual_seed(0)
        q, k, v = (torch.randn(s["batch"], s["heads"], seq, s["d_head"], device=device, dtype=s["dtype"])
                   for _ in range(3))
        runs = {
            "naive": (lambda: scaled_dot_product_attention(q, k, v)) if seq <= s["naive_max"] else None,
            "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
            "linear": lambda: linear_attention(q, k, v),
            "local": lambda: sliding_window_attention(q, k, v, WINDOW),
        }
        r = {name: cost(fn, device, args.repeats) if fn else None for name, fn in runs.items()}
        kernel = sdpa_backend(q, k, v)
        t = lambda name: fmt(None if r[name] is None else r[name][0])
        m = lambda name: fmt(None if r[name] is None else r[name][1])
        ratios = lambda i: " ".join(ratio(r["naive"], r[name], i) for name in ("sdpa", "linear", "local"))
        print(f"{seq:>6} {kernel:>13} | {'':>9} {t('naive')} {t('sdpa')} {t('linear')} {t('local')} | {ratios(0)}"
              f" | {'':>5} {m('naive')} {m('sdpa')} {m('linear')} {m('local')} | {ratios(1)}", flush=True)
        rows.append((seq, q, k, v))

    if device.type != "cuda":
        return
    print("\nEach SDPA backend forced with torch.nn.attention.sdpa_kernel (- = refused or out of memory):")
    print(f"{'seq':>6} | " + " ".join(f"{name + ' ms':>16}" for name in BACKENDS) + " | "
          + " ".join(f"{name + ' MiB':>17}" for name in BACKENDS))
    for seq, q, k, v in rows:
        forced = {}
        for name, backend in BACKENDS.items():
            def run(backend=backend):
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(q, k, v)
            forced[name] = cost(run, device, args.repeats) if name != "math" or seq <= s["naive_max"] else None
        print(f"{seq:>6} | " + " ".join(fmt(None if forced[n] is None else forced[n][0], 16) for n in BACKENDS)
              + " | " + " ".join(fmt(None if forced[n] is None else forced[n][1], 17) for n in BACKENDS), flush=True)


if __name__ == "__main__":
    main()
