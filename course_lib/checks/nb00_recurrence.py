"""Checks of notebook 00_recurrence: one GRU step, additive attention scores."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .. import recurrent
from .engine import check_close, exercise, on_error

_GATES = ("weight_ih (3 d_hidden, d_in) and weight_hh (3 d_hidden, d_hidden) stack the reset, update and candidate "
          "rows: x @ weight_ih.T + bias_ih is (batch, 3 d_hidden); .chunk(3, dim=-1) splits it into r, z, n")


def _gru_variants(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> dict[str, Tensor]:
    """The step as common mistakes compute it, keyed by the message that names each."""
    r_x, z_x, n_x = (x @ w_ih.T + b_ih).chunk(3, -1)
    r_h, z_h, n_h = (h @ w_hh.T + b_hh).chunk(3, -1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)
    return {
        "the update gate blends the wrong way round: h' = (1 - z) * n + z * h (z keeps the old state)":
            z * n + (1 - z) * h,
        "the reset gate multiplies the whole hidden term, bias included: n = tanh(x W_in + b_in + r * (h W_hn + b_hn))":
            (1 - z) * torch.tanh(n_x + r * (h @ w_hh.T).chunk(3, -1)[2] + b_hh.chunk(3)[2]) + z * h,
        "the gates are in the order reset, update, candidate (r, z, n); you read them as z, r, n":
            (1 - r) * torch.tanh(n_x + z * n_h) + r * h,
        "the candidate n needs the tanh: n = tanh(x W_in + b_in + r * (h W_hn + b_hn))":
            (1 - z) * (n_x + r * n_h) + z * h,
        "the reset gate is missing: n = tanh(x W_in + b_in + r * (h W_hn + b_hn))":
            (1 - z) * torch.tanh(n_x + n_h) + z * h,
        "the reset and update gates need a sigmoid (values in 0..1), not a tanh":
            (1 - torch.tanh(z_x + z_h)) * torch.tanh(n_x + torch.tanh(r_x + r_h) * n_h) + torch.tanh(z_x + z_h) * h,
        "return the next state h', not the candidate n": n,
    }


@exercise(forbid={"course_lib.recurrent.gru_cell": recurrent.gru_cell, "torch.nn.GRUCell.forward": nn.GRUCell.forward,
                  "torch.gru_cell": torch.gru_cell})
def check_gru_step(gru_step: Callable[..., Tensor]) -> None:
    """Notebook 00: ``gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh)`` equals one step of
    ``torch.nn.GRUCell`` with those weights: x (batch, d_in), h (batch, d_hidden) -> (batch, d_hidden)."""
    torch.manual_seed(0)
    cell = nn.GRUCell(5, 4).double()
    g = torch.Generator().manual_seed(1)
    x, h = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    weights = [p.detach() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    with on_error(_GATES):
        actual = gru_step(x.clone(), h.clone(), *(w.clone() for w in weights))
    check_close(actual, recurrent.gru_cell(x, h, *weights), "gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh)",
                _gru_variants(x, h, *weights))


@exercise(forbid={"course_lib.recurrent.additive_scores": recurrent.additive_scores})
def check_additive_scores(additive_scores: Callable[..., Tensor]) -> None:
    """Notebook 00: ``additive_scores(query, keys, w_q, w_k, v)`` returns e_j = v . tanh(W_q q + W_k k_j):
    query (batch, d_q), keys (batch, seq, d_k), w_q (d_attn, d_q), w_k (d_attn, d_k), v (d_attn,) -> (batch, seq)."""
    g = torch.Generator().manual_seed(2)
    query, keys = torch.randn(2, 3, generator=g), torch.randn(2, 5, 4, generator=g)  # d_q = 3, d_k = 4: apart
    w_q, w_k, v = torch.randn(6, 3, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    expected = recurrent.additive_scores(query, keys, w_q, w_k, v)
    hidden = (query @ w_q.T).unsqueeze(1) + keys @ w_k.T
    with on_error("follow the shapes: query @ w_q.T is (batch, d_attn), keys @ w_k.T is (batch, seq, d_attn); "
                  "add them with the query's term broadcast over seq (unsqueeze(1)), tanh, then @ v"):
        actual = additive_scores(query.clone(), keys.clone(), w_q.clone(), w_k.clone(), v.clone())
    check_close(actual, expected, "additive_scores(query, keys, w_q, w_k, v)", {
        "the tanh is missing: e_j = v . tanh(W_q q + W_k k_j)": hidden @ v,
        "return the scores; the softmax over them comes after, in the attention": expected.softmax(-1),
        "v is missing: the tanh gives (batch, seq, d_attn) and v . (...) turns each key's vector into one score":
            torch.tanh(hidden).sum(-1),
        "the tanh applies to the sum W_q q + W_k k_j, not to each term":
            (torch.tanh(query @ w_q.T).unsqueeze(1) + torch.tanh(keys @ w_k.T)) @ v,
    })
