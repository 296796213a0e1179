"""course_lib MultiHeadAttention vs torch.nn.MultiheadAttention, forward + backward, same shapes.

Prints time per step and the ratio ours / torch's, measured side by side in one run:
- naive path (explicit softmax, returns per-head weights) vs torch asked for per-head weights;
- fast path (F.scaled_dot_product_attention, no weights) vs torch without weights.
Goals (issue 2): at most 1.2x naive, at most 1.05x fast. The last column names the SDPA kernel
that the fast path's shapes get (flash expected in bf16 on a GPU).

    python benchmarks/bench_multihead.py [--device cuda] [--repeats 30] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import platform
import statistics

import torch
from torch import nn

from course_lib.efficient import sdpa_backend, time_call
from course_lib.multihead import MultiHeadAttention, copy_torch_attention

SHAPES = [  # (batch, seq, d_model, heads)
    (32, 64, 256, 8),
    (8, 256, 512, 8),
    (4, 512, 512, 16),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    args = parser.parse_args()
    device, dtype = args.device, getattr(torch, args.dtype)
    threads = f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name() if device == "cuda" else threads
    print(f"device: {device} ({name}), torch {torch.__version__}, {args.dtype}, forward + backward, "
          f"median of {args.repeats}")
    print(f"{'batch x seq x d_model / heads':>30} {'path':>6} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} "
          f"{'sdpa kernel':>13}")
    for batch, seq, d_model, heads in SHAPES:
        torch.manual_seed(0)
        ref = nn.MultiheadAttention(d_model, heads, batch_first=True).to(device, dtype)
        x = torch.randn(batch, seq, d_model, device=device, dtype=dtype, requires_grad=True)
        q = torch.randn(batch, heads, seq, d_model // heads, device=device, dtype=dtype)
        for path, fast, need_weights in (("naive", False, True), ("fast", True, False)):
            ours = MultiHeadAttention(d_model, heads, fast=fast).to(device, dtype)
            copy_torch_attention(ref, ours)

            def run_ours():
                ours(x)[0].sum().backward()

            def run_torch():
                ref(x, x, x, need_weights=need_weights, average_attn_weights=False)[0].sum().backward()

            # Alternate the two so that drifts in clock speed hit both alike.
            t_ours, t_torch = [], []
            for _ in range(3):
                for fn, times in ((run_ours, t_ours), (run_torch, t_torch)):
                    times.append(time_call(fn, device, args.repeats // 3, warmup=3, reduce=statistics.median))
            a, b = min(t_ours), min(t_torch)
            shape = f"{batch} x {seq} x {d_model} / {heads}"
            kernel = sdpa_backend(q, q, q) if fast else "-"
            print(f"{shape:>30} {path:>6} {a * 1e3:9.2f} {b * 1e3:9.2f} {a / b:6.2f} {kernel:>13}", flush=True)


if __name__ == "__main__":
    main()
