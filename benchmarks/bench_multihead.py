"""course_lib MultiHeadAttention vs torch.nn.MultiheadAttention, forward + backward, same shapes.

Prints time per step and the ratio ours / torch's, measured side by side in one run:
- naive path (explicit softmax, returns per-head weights) vs torch asked for per-head weights;
- fast path (F.scaled_dot_product_attention, no weights) vs torch without weights.
Goals (issue 2): at most 1.2x naive, at most 1.05x fast.

    python benchmarks/bench_multihead.py [--device cuda] [--repeats 30]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from course_lib.multihead import MultiHeadAttention

SHAPES = [  # (batch, seq, d_model, heads)
    (32, 64, 256, 8),
    (8, 256, 512, 8),
    (4, 512, 512, 16),
]


def copy_weights(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        for mine, w, b in zip((ours.w_q, ours.w_k, ours.w_v), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
            mine.weight.copy_(w)
            mine.bias.copy_(b)
        ours.w_o.weight.copy_(ref.out_proj.weight)
        ours.w_o.bias.copy_(ref.out_proj.bias)


def step_time(step, repeats: int, device: str) -> float:
    """Median seconds of one call of ``step`` (after warm-up)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}), torch {torch.__version__}, float32, forward + backward, median of {args.repeats}")
    print(f"{'batch x seq x d_model / heads':>30} {'path':>6} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}")
    for batch, seq, d_model, heads in SHAPES:
        torch.manual_seed(0)
        ref = nn.MultiheadAttention(d_model, heads, batch_first=True).to(device)
        x = torch.randn(batch, seq, d_model, device=device, requires_grad=True)
        for path, fast, need_weights in (("naive", False, True), ("fast", True, False)):
            ours = MultiHeadAttention(d_model, heads, fast=fast).to(device)
            copy_weights(ours, ref)

            def run_ours():
                ours(x)[0].sum().backward()

            def run_torch():
                ref(x, x, x, need_weights=need_weights, average_attn_weights=False)[0].sum().backward()

            # Alternate the two so that drifts in clock speed hit both alike.
            t_ours, t_torch = [], []
            for _ in range(3):
                t_ours.append(step_time(run_ours, args.repeats // 3, device))
                t_torch.append(step_time(run_torch, args.repeats // 3, device))
            a, b = min(t_ours), min(t_torch)
            print(f"{f'{batch} x {seq} x {d_model} / {heads}':>30} {path:>6} {a * 1e3:9.2f} {b * 1e3:9.2f} {a / b:6.2f}")


if __name__ == "__main__":
    main()
