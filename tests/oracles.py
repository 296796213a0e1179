"""Helpers shared by the oracle tests of course_lib (tests/lib): float64 inputs, torch's masks,
torch's layers with non-trivial norms, and gradients compared parameter by parameter.

Our modules and torch's differ in two ways that the comparisons bridge: torch packs W_q, W_k,
W_v into one ``in_proj_weight`` (ours keeps ``w_q``, ``w_k``, ``w_v`` apart), and a few parts
have other names (``out_proj`` is our ``w_o``, ``multihead_attn`` our ``cross_attn``,
``linear1`` our ``ff.linear1``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

ATOL = 1e-10  # float64: a rounding difference is about 1e-15; any wrong formula is above 1e-3
D_MODEL, HEADS, D_FF = 16, 4, 32


def randn(*shape: int, seed: int = 0, requires_grad: bool = True) -> Tensor:
    """A reproducible float64 tensor, by default requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def key_padding(batch: int, seq: int) -> Tensor:
    """torch's convention (True = ignore): sequence b has seq - b real tokens."""
    return torch.arange(seq).expand(batch, seq) >= (seq - torch.arange(batch)).unsqueeze(1)


def randomize_norms(module: nn.Module, seed: int) -> None:
    """Non-trivial gains and biases, so that a misplaced or swapped norm shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g, dtype=m.bias.dtype) - 0.5)


def torch_layer(kind: type[nn.Module], norm_first: bool, activation: str = "relu", seed: int = 0) -> nn.Module:
    """torch's TransformerEncoderLayer or TransformerDecoderLayer (``kind``) in float64, eval mode."""
    torch.manual_seed(seed)
    ref = kind(D_MODEL, HEADS, D_FF, dropout=0.1, activation=activation, norm_first=norm_first,
               batch_first=True).double().eval()
    randomize_norms(ref, seed)
    return ref


def our_name(torch_name: str) -> str:
    """torch's parameter name -> ours, for the parameters that are not packed."""
    for theirs, mine in (("multihead_attn", "cross_attn"), ("out_proj", "w_o"), ("linear", "ff.linear")):
        torch_name = torch_name.replace(theirs, mine)
    return torch_name


def assert_same_grads(ours: nn.Module, ref: nn.Module, out: Tensor, expected: Tensor,
                      inputs: Tensor | tuple[Tensor, ...], rename=our_name) -> None:
    """Input and parameter gradients of sum(out^2) agree, the parameters matched by role.

    ``rename`` maps torch's parameter names (of ``ref``) to ours, after the packed
    ``in_proj_*`` tensors are split into ``w_q``, ``w_k``, ``w_v``.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    g_ours = torch.autograd.grad(out.square().sum(), inputs, retain_graph=True)
    g_ref = torch.autograd.grad(expected.square().sum(), inputs, retain_graph=True)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    ours.zero_grad(), ref.zero_grad()
    out.square().sum().backward()
    expected.square().sum().backward()
    mine = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        if "in_proj_" in name:  # W_q, W_k, W_v packed into one tensor
            prefix, kind = rename(name).rsplit("in_proj_", 1)
            grad = torch.cat([mine[f"{prefix}w_{c}.{kind}"].grad for c in "qkv"])
        else:
            grad = mine[rename(name)].grad
        torch.testing.assert_close(grad, p.grad, atol=ATOL, rtol=0, msg=name)
