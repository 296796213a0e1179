"""Cheaper attention, and the tools that measure what attention costs (introduced in notebook
09_efficient_attention).

Full attention compares every query with every key, so its time and memory grow with seq²:
the (seq, seq) scores exist all at once. The remedies here either keep softmax attention but
compute it on fewer (query, key) pairs (local and block-sparse attention), or replace the
softmax by a kernel whose feature map lets the sum over the keys be computed once for all
queries (linear attention). Masks follow the course convention: bool, True = may attend.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
import torch.profiler
from torch import Tensor

from .validation import check_callable, check_device, check_int, check_number, check_tensor

# Local attention works on blocks of at least this many positions: tiny blocks would make many
# tiny matrix products, and the cost stays linear in seq whatever the (constant) block size.
MIN_BLOCK = 32


# --- masks ------------------------------------------------------------------------------

def sliding_window_mask(seq_len: int, window: int, causal: bool = False,
                        device: torch.device | str | None = None) -> Tensor:
    """(seq_len, seq_len) bool mask of local attention: query i may attend to key j when
    |i - j| <= window, that is ``window`` positions on each side and itself; with ``causal``,
    only j <= i (itself and the ``window`` positions before it)
    (introduced in notebook 09_efficient_attention).

    A window of seq_len - 1 or more is full (or causal) attention.
    """
    check_int("seq_len", seq_len, low=0)
    check_int("window", window, low=0)
    pos = torch.arange(seq_len, device=device)
    offset = pos[:, None] - pos[None, :]  # i - j
    mask = offset.abs() <= window
    return mask & (offset >= 0) if causal else mask


def block_sparse_layout(num_blocks: int, neighbours: int = 1, num_global: int = 1,
                        causal: bool = False, device: torch.device | str | None = None) -> Tensor:
    """(num_blocks, num_blocks) bool: query block b may attend to key block c when
    |b - c| <= neighbours, or when c < num_global (the first blocks are "global": every query
    reads them, like the summary positions of the Sparse Transformer's fixed pattern);
    with ``causal``, only c <= b (introduced in notebook 09_efficient_attention).
    """
    check_int("num_blocks", num_blocks, low=0)
    check_int("neighbours", neighbours, low=0)
    check_int("num_global", num_global, low=0)
    layout = sliding_window_mask(num_blocks, neighbours, causal, device)
    layout[:, :num_global] = True
    return layout.tril() if causal else layout


def block_sparse_mask(seq_len: int, block_size: int, neighbours: int = 1, num_global: int = 1,
                      causal: bool = False, device: torch.device | str | None = None) -> Tensor:
    """(seq_len, seq_len) bool mask of ``block_sparse_layout`` with blocks of ``block_size``
    positions (the last block may be shorter); with ``causal`` also causal inside the blocks
    (introduced in notebook 09_efficient_attention)."""
    check_int("seq_len", seq_len, low=0)
    check_int("block_size", block_size, low=1)
    num_blocks = -(-seq_len // block_size)
    layout = block_sparse_layout(num_blocks, neighbours, num_global, causal, device)
    block_of = torch.arange(seq_len, device=device) // block_size
    mask = layout[block_of[:, None], block_of[None, :]]
    return mask.tril() if causal else mask


# --- attention on fewer pairs -------------------------------------------------------------

def _attend_blocks(q: Tensor, k: Tensor, v: Tensor, layout: Tensor, block_size: int,
                   allowed: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Softmax attention computed only on the (query block, key block) pairs where ``layout`` is
    True, and inside them only where ``allowed(query_pos, key_pos)`` is True.

    Each query block gathers its key blocks into one short sequence, so the scores take
    seq * width * block_size entries (width = the most key blocks any query block reads)
    instead of seq². Returns (..., seq, d_v).
    """
    seq, num_blocks = q.shape[-2], layout.shape[0]
    pad = num_blocks * block_size - seq
    q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    counts = layout.sum(-1)
    width = int(counts.max())
    # The key blocks of each query block, visible ones first (in order); the rest is filler.
    order = torch.sort((~layout).to(torch.uint8), dim=-1, stable=True).indices[:, :width]
    real = torch.arange(width, device=q.device) < counts[:, None]  # (num_blocks, width)

    def gather(t: Tensor) -> Tensor:  # (..., seq, d) -> (..., num_blocks, width * block_size, d)
        return t.unflatten(-2, (num_blocks, block_size))[..., order, :, :].flatten(-3, -2)

    positions = torch.arange(num_blocks * block_size, dtype=torch.int32, device=q.device).view(num_blocks, block_size)
    q_pos = positions[:, :, None]                      # (num_blocks, block_size, 1)
    k_pos = positions[order].flatten(-2)[:, None, :]   # (num_blocks, 1, width * block_size)
    mask = allowed(q_pos, k_pos) & (k_pos < seq) & real.repeat_interleave(block_size, -1)[:, None, :]
    # Padded queries (dropped below) see every gathered key, so that no row is fully masked (NaN).
    mask = mask | (q_pos >= seq)
    # Four dimensions, mask included (the blocks where the heads usually are), as the fused kernels want.
    four_d = lambda t: t.reshape(-1, *t.shape[-3:])
    out = F.scaled_dot_product_attention(four_d(q.unflatten(-2, (num_blocks, block_size))), four_d(gather(k)),
                                         four_d(gather(v)), attn_mask=mask.unsqueeze(0))
    return out.reshape(*q.shape[:-1], v.shape[-1])[..., :seq, :]


def _self_attention_length(q: Tensor, k: Tensor, v: Tensor) -> int:
    """The shared sequence length of q, k and v; ValueError when they differ."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, "... seq d", "float")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q, k and v must share their leading dimensions, and q and k their last (d_k), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    seq = q.shape[-2]
    if k.shape[-2] != seq or v.shape[-2] != seq:
        raise ValueError(f"q, k and v must have the same length (self-attention), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    return seq


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int, causal: bool = False) -> Tensor:
    """Self-attention restricted to ``sliding_window_mask(seq, window, causal)``, computed without
    the (seq, seq) scores: time and memory grow like seq * window
    (introduced in notebook 09_efficient_attention).

    q, k: (..., seq, d_k), v: (..., seq, d_v) (the same seq: self-attention). Returns (..., seq, d_v).
    """
    seq = _self_attention_length(q, k, v)
    check_int("window", window, low=0)
    # Blocks at least as long as the window: a query's keys lie in its own block and the two beside it.
    block_size = max(1, min(seq, max(window, MIN_BLOCK)))
    layout = sliding_window_mask(-(-seq // block_size), 1, causal, q.device)

    def allowed(i: Tensor, j: Tensor) -> Tensor:
        near = (i - j).abs() <= window
        return near & (j <= i) if causal else near
    return _attend_blocks(q, k, v, layout, block_size, allowed)


def block_sparse_attention(q: Tensor, k: Tensor, v: Tensor, block_size: int, neighbours: int = 1,
                           num_global: int = 1, causal: bool = False) -> Tensor:
    """Self-attention restricted to ``block_sparse_mask(seq, block_size, neighbours, num_global,
    causal)``, computed on the visible blocks only (introduced in notebook 09_efficient_attention).

    q, k: (..., seq, d_k), v: (..., seq, d_v). Returns (..., seq, d_v).
    """
    seq = _self_attention_length(q, k, v)
    check_int("block_size", block_size, low=1)
    layout = block_sparse_layout(-(-seq // block_size), neighbours, num_global, causal, q.device)

    def allowed(i: Tensor, j: Tensor) -> Tensor:
        return j <= i if causal else torch.ones_like(i == j)
    return _attend_blocks(q, k, v, layout, block_size, allowed)


# --- linear attention ---------------------------------------------------------------------

def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1, positive everywhere: the feature map of Katharopoulos et al. (2020),
    "Transformers are RNNs"."""
    check_tensor("x", x, dtype="float")
    return F.elu(x) + 1


def linear_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                     feature_map: Callable[[Tensor], Tensor] = elu_feature_map, eps: float = 1e-6) -> Tensor:
    """Kernelized attention: the softmax's exp(q·k) is replaced by phi(q)·phi(k), so

        out_i = phi(q_i)^T S / (phi(q_i)^T z),  S = sum_j phi(k_j) v_j^T  (d_k, d_v),  z = sum_j phi(k_j),

    with the sums over all keys j, or over j <= i when ``causal`` (running sums). S and z are
    computed once for all queries: time grows like seq * d_k * d_v, not seq²
    (introduced in notebook 09_efficient_attention).

    q, k: (..., seq_q / seq_k, d_k), v: (..., seq_k, d_v). Returns (..., seq_q, d_v).
    No 1/sqrt(d_k) scaling, as in the paper; ``eps`` keeps the division safe.
    The causal form keeps one (d_k, d_v) state per position: memory seq * d_k * d_v
    (implementations that run long sequences process it in chunks, or step by step as an RNN).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, "... seq d", "float")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"q and k must share d_k, and k and v seq_k, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    check_callable("feature_map", feature_map)
    check_number("eps", eps, low=0.0)
    phi_q, phi_k = feature_map(q), feature_map(k)
    if causal:
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(f"q and k must have the same length for causal linear attention (seq_q == seq_k), "
                             f"got {q.shape[-2]} and {k.shape[-2]}")
        state = torch.einsum("...jd,...je->...jde", phi_k, v).cumsum(-3)   # (..., seq, d_k, d_v)
        numerator = torch.einsum("...id,...ide->...ie", phi_q, state)
        normalizer = (phi_q * phi_k.cumsum(-2)).sum(-1, keepdim=True)
    else:
        numerator = phi_q @ (phi_k.transpose(-2, -1) @ v)                  # (d_k, d_v) in the middle
        normalizer = phi_q @ phi_k.sum(-2).unsqueeze(-1)
    return numerator / (normalizer + eps)


# --- measuring ----------------------------------------------------------------------------

@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ profiler's start/stop lines (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profile(fn: Callable[[], object], memory: bool) -> torch.profiler.profile:
    """The CPU profiler's record of one call of ``fn()`` (with every allocation when ``memory``)."""
    with _quiet_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                 profile_memory=memory) as prof:
        fn()
    return prof


def _cpu_allocations(prof: torch.profiler.profile) -> list[int]:
    """The bytes of every allocation (> 0) and free (< 0) of torch's CPU allocator, in order.

    Read from the profiler's Chrome trace, the public record that keeps each of them:
    ``prof.events()`` adds up the ones inside an operator, and a peak needs their order.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    cpu = int(torch.autograd.DeviceType.CPU)
    memory = [e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == cpu]
    return [e["args"]["Bytes"] for e in sorted(memory, key=lambda e: e["ts"])]


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Bytes that ``fn()`` held at its peak, above what was allocated before the call, its
    result included (introduced in notebook 09_efficient_attention).

    cuda: ``torch.cuda.max_memory_allocated``. cpu: torch has no such counter, so the
    profiler records every allocation and free of torch's CPU allocator, and the peak of
    their running sum is taken (the same quantity; Python objects are not counted).
    """
    check_callable("fn", fn)
    device = check_device("device", device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures on cpu or cuda, got {device}")
    held = peak = 0
    for nbytes in _cpu_allocations(_profile(fn, memory=True)):
        held += nbytes
        peak = max(peak, held)
    return peak


def time_call(fn: Callable[[], object], device: torch.device | str, repeats: int = 5, warmup: int = 1,
              reduce: Callable[[list[float]], float] = min) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn()`` after ``warmup`` calls, waiting for
    the GPU to finish each one (introduced in notebook 09_efficient_attention).

    The fastest, not the mean: on a shared machine other work only ever adds time. ``reduce``
    picks another statistic (``statistics.median`` for a benchmark's typical call).
    """
    check_callable("fn", fn)
    device = check_device("device", device)
    check_int("repeats", repeats, low=1)
    check_int("warmup", warmup, low=0)
    check_callable("reduce", reduce)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return reduce(times)


_SDPA_KERNELS = {  # the aten operator each backend of F.scaled_dot_product_attention runs
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "mem-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def sdpa_backend(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> str:
    """Which kernel ``F.scaled_dot_product_attention(q, k, v, **kwargs)`` runs on these inputs:
    "flash", "mem-efficient", "cudnn", "math" or "flash (cpu)", read from the operators that
    the profiler records during one call (introduced in notebook 09_efficient_attention)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, "... seq d", dtype="float")
    prof = _profile(lambda: F.scaled_dot_product_attention(q, k, v, **kwargs), memory=False)
    names = {event.key for event in prof.key_averages()}
    found = [label for op, label in _SDPA_KERNELS.items() if op in names]
    return found[0] if found else "unknown"
