"""The comparison engine of the student checks, and the inputs that several notebooks' checks share.

Every public check is wrapped by :func:`exercise`: whatever goes wrong reaches the student as
one :class:`CheckFailed` line (what was called, what was expected, the likely mistake), with
the student's own frames when their code raised, and never the check's or the reference's
source. :func:`check_close` compares a student's tensor with the reference and, when they
differ, with the values that common mistakes produce, so that the message names the likely
mistake. :func:`own_work` lets a hidden test give 0 to an answer that calls the exercise's
own reference, which the visible check refuses in the same way.
"""
from __future__ import annotations

import functools
import os
import sys
import sysconfig
import traceback
from contextlib import contextmanager
from types import CodeType, FrameType, TracebackType
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor, nn

_NEG_INF_BELOW = -1e8  # a student's -1e9 or finfo.min counts as -inf

# Frames in these folders are not the student's: course_lib (the checks and the references),
# torch, the standard library and every installed package.
_LIBRARY_DIRS = tuple(os.path.realpath(p) + os.sep for p in {
    os.path.dirname(os.path.dirname(__file__)), os.path.dirname(torch.__file__),
    *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))})

F = TypeVar("F", bound=Callable[..., Any])


class CheckFailed(AssertionError):
    """A visible check failed; the message says what was expected and the likely mistake.

    ``frames`` are the student's own traceback lines, when their code raised. IPython (and so
    Jupyter and nbgrader's feedback) shows :meth:`_render_traceback_` instead of a traceback.
    """

    def __init__(self, message: str, frames: list[str] | None = None):
        super().__init__(message)
        self.frames = frames or []

    def _render_traceback_(self) -> list[str]:
        return [f"CheckFailed: {self}", *self.frames]


def _is_student_file(filename: str) -> bool:
    return not (filename.startswith("<frozen") or os.path.realpath(filename).startswith(_LIBRARY_DIRS))


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        dtype = "" if value.dtype == torch.float32 else f" {str(value.dtype).removeprefix('torch.')}"
        return f"a {tuple(value.shape)}{dtype} tensor"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) < 30 else "a str"
    return f"a {type(value).__name__}"


def _describe_call(frame: FrameType) -> str:
    """``name(arg=..., ...)`` for the student's frame, arguments described by shape or type."""
    code = frame.f_code
    names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    args = frame.f_locals
    owner = f"{type(args['self']).__name__}." if names[:1] == ("self",) and "self" in args else ""
    shown = ", ".join(f"{n}={_describe(args[n])}" for n in names if n != "self" and n in args)
    return f"your {owner}{code.co_name}({shown})"


def student_error(error: Exception, hint: str = "") -> CheckFailed:
    """The CheckFailed that reports ``error``: the student's call, the error and their frames only."""
    tb: TracebackType | None = error.__traceback__
    while tb is not None and not _is_student_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    name = type(error).__name__
    if tb is None:  # nothing of the student's raised: their result broke what the check does with it
        return CheckFailed(f"your answer could not be used: {name}: {error}" + (f"; {hint}" if hint else ""))
    frames = [line for line in traceback.format_list(
        [f for f in traceback.extract_tb(tb) if _is_student_file(f.filename)])]
    if isinstance(error, NotImplementedError) and not str(error):
        what = "the exercise is not done yet: replace `raise NotImplementedError()` with your code"
    else:
        what = f"{error}" + (f" ({hint})" if hint else "")
    return CheckFailed(f"{_describe_call(tb.tb_frame)} raised {name}: {what}", frames)


@contextmanager
def on_error(hint: str, types: tuple[type[Exception], ...] = (RuntimeError,), says: str = "") -> Iterator[None]:
    """An error of ``types`` (whose text contains ``says``, where given) that the student's code
    raises inside the block is reported with ``hint``, the mistake that typically causes it; any
    other error without it."""
    try:
        yield
    except CheckFailed:
        raise
    except types as error:
        raise student_error(error, hint if says in str(error) else "") from None


# --- calls to the exercise's own reference ------------------------------------------------------

def _code_of(f: object) -> CodeType | None:
    return getattr(getattr(f, "__func__", f), "__code__", None)


def _student_codes(student: object) -> set[CodeType]:
    """The code objects that run the student's answer: a function's, or its class's methods'
    (those written in the class itself, and those of its bases that the student wrote)."""
    if isinstance(student, functools.partial):
        return _student_codes(student.func)
    if isinstance(student, type):
        todo = [_code_of(f) for f in vars(student).values()]
        todo += [c for base in student.__mro__[1:] for c in map(_code_of, vars(base).values())
                 if c is not None and _is_student_file(c.co_filename)]
    else:
        todo = [_code_of(student)]
    codes: set[CodeType] = set()
    while todo:  # nested functions and lambdas are the student's too
        code = todo.pop()
        if isinstance(code, CodeType) and code not in codes:
            codes.add(code)
            todo.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return codes


def _forbidden_codes(obj: object) -> list[CodeType]:
    """A class is used through its forward (a module) or __call__; building one is no delegation."""
    if isinstance(obj, type):
        obj = vars(obj).get("forward", vars(obj).get("__call__"))
    code = _code_of(obj)
    return [code] if code is not None else []


class _Watch:
    """A profile function that records calls to forbidden functions made from the student's code."""

    def __init__(self, student: object, forbid: dict[str, object]):
        # By identity: code objects compare equal by content, and a student's copy is their own.
        self.student_codes = {id(c) for c in _student_codes(student)}
        self.codes: dict[int, tuple[str, Callable[[dict], bool] | None]] = {}
        self.builtins: dict[int, str] = {}
        self.found: list[str] = []
        for name, spec in forbid.items():
            obj, when = spec if isinstance(spec, tuple) else (spec, None)
            codes = _forbidden_codes(obj)
            inherited = _code_of(getattr(student, "forward", None)) if isinstance(student, type) else None
            if obj is student or getattr(student, "func", None) is obj or self.student_codes & set(map(id, codes)) \
                    or any(inherited is c for c in codes):
                self.found.append(name)
            for code in codes:
                self.codes[id(code)] = (name, when)
            if not codes:
                self.builtins[id(obj)] = name
        self._keep = [student, *forbid.values()]  # the ids above stay unique while these live

    def _from_student(self, frame: FrameType | None) -> bool:
        while frame is not None:
            if id(frame.f_code) in self.student_codes:
                return True
            frame = frame.f_back
        return False

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            entry = self.codes.get(id(frame.f_code))
            if entry and (entry[1] is None or entry[1](frame.f_locals)) and self._from_student(frame.f_back):
                self.found.append(entry[0])
        elif event == "c_call":
            name = self.builtins.get(id(arg))
            if name and self._from_student(frame):
                self.found.append(name)


def delegation_message(student: object, name: str) -> str:
    who = getattr(student, "__name__", type(student).__name__)
    return (f"{who} calls {name}, the very thing this exercise asks you to write: an answer that "
            "calls it scores 0; write it yourself from tensor operations")


@contextmanager
def watching(student: object, forbid: dict[str, object]) -> Iterator[None]:
    """Run the block, then raise CheckFailed if ``student`` called one of ``forbid`` (name -> function,
    class, builtin, or (function, predicate on its arguments)), directly, through an alias or a helper."""
    watch = _Watch(student, forbid)
    if watch.found:
        raise CheckFailed(delegation_message(student, watch.found[0]))
    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        yield
    except Exception:
        if not watch.found:
            raise
    finally:
        sys.setprofile(previous)
    if watch.found:
        raise CheckFailed(delegation_message(student, watch.found[0])) from None


def own_work(check: Callable, student: object) -> Any:
    """For hidden tests: ``with own_work(checks.check_x, x): ...`` fails (CheckFailed) when the
    student's ``x`` calls the reference that ``check``'s exercise excludes."""
    return watching(student, getattr(check, "forbidden", {}))


def exercise(forbid: dict[str, object] | None = None) -> Callable[[F], F]:
    """Make a check report every failure as one CheckFailed line without the check's source, and
    refuse an answer that calls ``forbid`` (the exercise's own reference, see :func:`watching`)."""
    def wrap(check: F) -> F:
        @functools.wraps(check)
        def run(student, *args, **kwargs):
            failure: CheckFailed
            try:
                with watching(student, forbid or {}):
                    return check(student, *args, **kwargs)
            except CheckFailed as error:
                failure = error
            except Exception as error:
                failure = student_error(error)
            # A fresh traceback: outside IPython too, only this frame and the caller's are shown.
            raise failure.with_traceback(None) from None
        run.forbidden = dict(forbid or {})
        return run  # type: ignore[return-value]
    return wrap


# --- comparisons ----------------------------------------------------------------------------------

def _normalized(t: Tensor) -> Tensor:
    t = t.detach().to(torch.float64)
    return t.masked_fill(t < _NEG_INF_BELOW, float("-inf"))


def is_close(a: Tensor, b: Tensor, atol: float) -> bool:
    """Same shape and values, any very negative entry counting as -inf."""
    return a.shape == b.shape and torch.allclose(_normalized(a), _normalized(b), atol=atol, rtol=1e-4)


def first_difference(actual: Tensor, expected: Tensor, atol: float) -> str:
    """Where two tensors of one shape first differ: ``at [0, 2, 1]: got -inf, expected 0.348``."""
    a, b = _normalized(actual), _normalized(expected)
    same = torch.isclose(a, b, atol=atol, rtol=1e-4) | (a.isnan() & b.isnan())
    where = (~same).nonzero()[0].tolist()
    return f"at [{', '.join(map(str, where))}]: got {a[tuple(where)].item():.4g}, expected {b[tuple(where)].item():.4g}"


def check_close(actual, expected: Tensor, what: str, mistakes: dict[str, Tensor] | None = None,
                atol: float = 1e-5, broken: dict[str, Callable[[Tensor], bool]] | None = None) -> None:
    """Raise CheckFailed unless ``actual`` is a tensor equal to ``expected``.

    ``mistakes`` maps a message to the value that the mistake it names would produce; ``broken``
    maps a message to a test that is true when an answer of the right shape breaks the property
    the message states (rows that sum to 1, -inf where masked): it names a whole family of
    mistakes that no single wrong value stands for.
    """
    if not isinstance(actual, Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(actual).__name__}"
                          + (" (did you forget to `return` it?)" if actual is None else ""))
    for message, wrong in (mistakes or {}).items():
        if is_close(actual, wrong, atol) and not is_close(actual, expected, atol):
            raise CheckFailed(f"{what} is not right: {message}")
    if actual.shape != expected.shape:
        raise CheckFailed(f"{what} should have shape {tuple(expected.shape)}, got {tuple(actual.shape)}")
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        raise CheckFailed(f"{what} contains NaN where no value should be: a division by zero (a sum or a "
                          "normalizer that is 0), or a softmax over a row that is all -inf")
    if not is_close(actual, expected, atol):
        for message, breaks in (broken or {}).items():
            if breaks(actual.detach()):
                raise CheckFailed(f"{what} is not right: {message}")
        raise CheckFailed(f"{what} has the right shape but wrong values, first "
                          f"{first_difference(actual, expected, atol)}")


def not_distributions(x: Tensor) -> bool:
    """True unless every row over the last axis is a probability distribution (>= 0, sums to 1)."""
    return bool((x < 0).any() or not torch.allclose(x.sum(-1), torch.ones(()), atol=1e-4))


def check_choice(answer, options: tuple[int, ...], name: str = "answer") -> None:
    """A quiz answer must be one of the option numbers, as an int (whether it is right is graded later)."""
    if type(answer) is not int:
        raise CheckFailed(f"{name} should be the option's number as an int, e.g. {name} = {options[0]}; "
                          f"got {answer!r} ({type(answer).__name__}), which the grade does not accept")
    if answer not in options:
        raise CheckFailed(f"{name} should be one of {', '.join(map(str, options))}; got {answer!r}")


def require_attributes(obj: object, names: tuple[str, ...], contract: str) -> None:
    """Fail naming the first attribute of ``names`` that the contract asks for and ``obj`` lacks."""
    for name in names:
        if not hasattr(obj, name):
            raise CheckFailed(f"{type(obj).__name__} has no attribute `{name}`: the contract asks for "
                              f"{contract}; keep the given __init__ (or create self.{name} in it)")


def qkv(batch: int = 2, seq_q: int = 3, seq_k: int = 5, d_k: int = 4, d_v: int = 6,
        seed: int = 0, heads: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Random queries (batch, seq_q, d_k), keys (batch, seq_k, d_k) and values (batch, seq_k, d_v);
    with ``heads``, (batch, heads, seq, d) each."""
    g = torch.Generator().manual_seed(seed)
    lead = (batch,) if heads is None else (batch, heads)
    return (torch.randn(*lead, seq_q, d_k, generator=g), torch.randn(*lead, seq_k, d_k, generator=g),
            torch.randn(*lead, seq_k, d_v, generator=g))


def random_mask(batch: int = 2, seq_q: int = 3, seq_k: int = 5, seed: int = 1) -> Tensor:
    """A random bool mask (batch, seq_q, seq_k), True = may attend."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, seq_q, seq_k, generator=g) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    return mask


def layer_and_reference(layer_class: type[nn.Module], reference_class: type[nn.Module],
                        sizes: tuple[int, int, int], norms: tuple[str, ...], seed: int,
                        modules: tuple[str, ...]) -> tuple[nn.Module, nn.Module, torch.Generator]:
    """The student's layer built with ``sizes`` (d_model, num_heads, d_ff) and no dropout, with
    gains and biases that differ per norm, so that a mixed-up norm shows; course_lib's layer with
    the same weights; and a generator for the inputs. A layer whose sub-modules differ fails,
    naming ``modules``."""
    d_model = sizes[0]
    torch.manual_seed(seed)
    layer = layer_class(*sizes, dropout=0.0).eval()
    require_attributes(layer, modules, "the sub-modules " + ", ".join(modules))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in norms:
            getattr(layer, name).weight.copy_(torch.rand(d_model, generator=g) + 0.5)
            getattr(layer, name).bias.copy_(torch.rand(d_model, generator=g) - 0.5)
    reference = reference_class(*sizes, dropout=0.0).eval()
    try:
        reference.load_state_dict(layer.state_dict())
    except RuntimeError as error:
        raise CheckFailed("keep the given __init__: the layer needs exactly the sub-modules "
                          f"{', '.join(modules)} ({str(error).splitlines()[0]})") from None
    return layer, reference, g
