"""Argument checks shared by course_lib, so that every public entry point refuses bad input
with one kind of message: "<argument> must be <expected>, got <what came>".

A wrong Python type raises ``TypeError``; a wrong value, size, shape or dtype ``ValueError``.
This module imports nothing from course_lib, so every layer may use it. The checks are plain
Python on sizes and dtypes, cheap enough for every call; only ``check_token_ids`` reads tensor
values (their min and max), which waits for the GPU: the embeddings call it, nothing per step.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxtuple = 40, 40, 4, 4
_DTYPES = {  # dtype kind -> (test, the words for it)
    "float": (lambda d: d.is_floating_point, "a floating-point tensor"),
    "integer": (lambda d: not d.is_floating_point and not d.is_complex and d != torch.bool, "an integer tensor"),
    "index": (lambda d: d in (torch.int64, torch.int32), "a torch.long (or torch.int) tensor"),
    "bool": (lambda d: d == torch.bool, "a torch.bool tensor"),
}


def describe(value: object) -> str:
    """What came, in a few words: a tensor's dtype and shape, else the value's type and a short repr."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if value is None or isinstance(value, (bool, numbers.Number, str)):
        return _REPR.repr(value)
    return f"{type(value).__name__} {_REPR.repr(value)}"


def check(ok: bool, name: str, expected: str, value: object, error: type[Exception] = ValueError) -> None:
    """Raise ``error("<name> must be <expected>, got <describe(value)>")`` unless ``ok``."""
    if not ok:
        raise error(f"{name} must be {expected}, got {describe(value)}")


def check_type(name: str, value: object, types: type | tuple[type, ...], expected: str | None = None) -> None:
    """TypeError unless ``value`` is an instance of ``types`` (``expected`` words it, default the type names)."""
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        check(False, name, expected or f"a {names}", value, TypeError)


def check_callable(name: str, value: object, optional: bool = False) -> None:
    """TypeError unless ``value`` is callable (or None when ``optional``)."""
    check(callable(value) or (optional and value is None), name,
          "a callable" + (" or None" if optional else ""), value, TypeError)


def _bounds(low: float | None, high: float | None, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def check_int(name: str, value: object, low: int | None = None, high: int | None = None,
              optional: bool = False) -> None:
    """An int (not a bool, not a float) in [low, high]; None too when ``optional``."""
    if optional and value is None:
        return
    expected = f"an int{_bounds(low, high)}" + (" or None" if optional else "")
    check(isinstance(value, numbers.Integral) and not isinstance(value, bool), name, expected, value, TypeError)
    check((low is None or value >= low) and (high is None or value <= high), name, expected, value)


def check_number(name: str, value: object, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """A real number (not a bool), not NaN, within the bounds (open where said); None too when ``optional``."""
    if optional and value is None:
        return
    expected = f"a number{_bounds(low, high, low_open, high_open)}" + (" or None" if optional else "")
    check(isinstance(value, numbers.Real) and not isinstance(value, bool), name, expected, value, TypeError)
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    check(not math.isnan(value) and above and below, name, expected, value)


def check_choice(name: str, value: object, choices: Iterable[Any]) -> None:
    """ValueError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    check(value in choices, name, f"one of {choices}", value)


def check_device(name: str, value: object) -> torch.device:
    """The ``torch.device`` that ``value`` names; ValueError for a string torch does not know."""
    check_type(name, value, (torch.device, str), "a torch.device or a device string such as 'cpu' or 'cuda'")
    try:
        return torch.device(value)
    except RuntimeError:
        raise ValueError(f"{name} must be a device string such as 'cpu', 'cuda' or 'cuda:0', "
                         f"got {describe(value)}") from None


def _shape_text(dims: Sequence[str], sizes: dict[str, int | None]) -> str:
    return "(" + ", ".join(f"{d}={sizes[d]}" if sizes.get(d) is not None else d for d in dims) + ")"


def _size(dim: str, sizes: dict[str, int | None]) -> int | None:
    """The size a dimension must have: a number in the shape ("batch 1 seq"), one of ``sizes``, or None (any)."""
    return int(dim) if dim.isdigit() else sizes.get(dim)


def check_tensor(name: str, value: object, shape: str | None = None, dtype: str | None = None,
                 **sizes: int | None) -> None:
    """A tensor of the dtype kind ``dtype`` ("float", "integer", "index" or "bool") and of ``shape``.

    ``shape`` names the dimensions, e.g. "batch seq d_model", "batch 1 seq" or "... seq d"
    ("..." first: any number of leading dimensions); ``sizes`` fixes some of them
    (``d_model=8``); the message then reads "(batch, seq, d_model=8)".
    """
    dims = shape.split() if shape else []
    # Models call this on every forward pass: the message is only worded when it is needed.
    if not isinstance(value, Tensor) or (dtype is not None and not _DTYPES[dtype][0](value.dtype)):
        expected = (_DTYPES[dtype][1] if dtype else "a tensor") + (
            f" of shape {_shape_text(dims, sizes)}" if shape else "")
        check(False, name, expected, value, ValueError if isinstance(value, Tensor) else TypeError)
    if not shape:
        return
    fixed = dims[1:] if dims[0] == "..." else dims
    actual = value.shape[value.dim() - len(fixed):] if value.dim() >= len(fixed) else None
    ok = (value.dim() >= len(fixed) if dims[0] == "..." else value.dim() == len(fixed)) and all(
        _size(d, sizes) in (None, n) for d, n in zip(fixed, actual or ()))
    if not ok:
        raise ValueError(f"{name} must have shape {_shape_text(dims, sizes)}, got shape {tuple(value.shape)}")


def check_token_ids(name: str, ids: object, vocab_size: int, shape: str = "batch seq") -> None:
    """Integer ids (torch.long or torch.int) of ``shape``, each in [0, vocab_size).

    The range check reads the ids' min and max: on a GPU it waits for the ids to be computed
    (one sync), so call it where ids enter a model (its embedding), not in per-step code.
    """
    check_tensor(name, ids, shape, "index")
    if ids.numel():
        low, high = (int(x) for x in torch.aminmax(ids))
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{name} must be token ids in [0, {vocab_size - 1}] (vocab_size={vocab_size}), "
                             f"got ids from {low} to {high}")


def check_mask(mask: object, seq_q: int, seq_k: int, batch: Sequence[int] = (), heads: int | None = None,
               name: str = "mask") -> None:
    """A bool mask (True = may attend) that broadcasts to the attention scores.

    Without ``heads``: (..., seq_q, seq_k), its leading dimensions broadcasting to ``batch``
    (the scores' leading sizes). With ``heads`` (multi-head attention, ``batch`` = (batch,)):
    (batch, seq_q, seq_k) for all heads, or (batch, heads, seq_q, seq_k) per head.
    """
    if heads is None:
        target = [*map(str, batch), f"seq_q={seq_q}", f"seq_k={seq_k}"]
        sizes = [*batch, seq_q, seq_k]
        spec = "(" + ", ".join(target) + ")"
    else:
        (b,) = batch
        per_head = isinstance(mask, Tensor) and mask.dim() == 4
        sizes = [b, heads, seq_q, seq_k] if per_head else [b, seq_q, seq_k]
        spec = (f"(batch={b}, seq_q={seq_q}, seq_k={seq_k}) or "
                f"(batch={b}, num_heads={heads}, seq_q={seq_q}, seq_k={seq_k})")
    expected = ("a torch.bool tensor (True = may attend; build one with causal_mask / padding_mask) "
                f"broadcastable to {spec}")
    check_type(name, mask, Tensor, expected)
    check(mask.dtype == torch.bool, name, expected, mask)
    ok = 2 <= mask.dim() <= len(sizes) and all(m in (1, n) for m, n in zip(reversed(mask.shape), reversed(sizes)))
    if not ok:
        raise ValueError(f"{name} must broadcast to {spec}, got shape {tuple(mask.shape)}")


def check_id_sequences(name: str, value: object, allow_empty: bool = False) -> None:
    """A non-empty list or tuple of token-id sequences: each a list, tuple or 1-D integer tensor of ints."""
    expected = "a list of token-id sequences (lists of ints)"
    check(isinstance(value, Sequence) and not isinstance(value, (str, bytes)), name, expected, value, TypeError)
    check(allow_empty or len(value) > 0, name, "a non-empty list of token-id sequences", value)
    for i, row in enumerate(value):
        if isinstance(row, Tensor):
            check_tensor(f"{name}[{i}]", row, "seq", "integer")
            continue
        check(isinstance(row, Sequence) and not isinstance(row, (str, bytes)), f"{name}[{i}]",
              "a sequence of int token ids", row, TypeError)
        check(all(type(t) is int or (isinstance(t, numbers.Integral) and not isinstance(t, bool)) for t in row),
              f"{name}[{i}]", "a sequence of int token ids", row, TypeError)


def check_strings(name: str, value: object, allow_empty: bool = False) -> list[str]:
    """The strings of an iterable (a list, a tuple, a generator), as a list; not one string,
    which would be read character by character."""
    expected = "an iterable of strings" if allow_empty else "a non-empty iterable of strings"
    check(isinstance(value, Iterable) and not isinstance(value, (str, bytes)), name, expected, value, TypeError)
    value = list(value)
    check(all(isinstance(s, str) for s in value), name, expected, value, TypeError)
    check(allow_empty or len(value) > 0, name, expected, value)
    return value
