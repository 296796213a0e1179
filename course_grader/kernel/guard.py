"""The grading guard: runs inside a graded kernel, keeps student code from rigging the tests.

Hidden tests run in the same interpreter as the student's code, which could redefine what
the tests rely on: ``torch.allclose = lambda *a, **k: True``, a course_lib check, the
reference ``F.scaled_dot_product_attention``, IPython's ``run_cell`` or input transformers
(so that test cells never run), ``showtraceback`` (so that failures print nothing), or
simply rebind ``F`` or ``torch`` in the notebook's namespace.

The grader (course_lib.grading.execute) calls :func:`install` before the first cell, while
nothing of the student's has run: it imports the modules the tests use and records the
objects they hold. Before every test cell :func:`restore` puts those objects back and
rebinds the notebook names imported by the instructor's cells; after the test cell
:func:`check` reports what was replaced while it ran (a student function that patches
``torch.allclose`` when called), and the grader then fails that cell. A test cell runs with
Tensor subclasses' ``__torch_function__`` switched off, so a returned tensor cannot decide
its own comparisons. Calls come in as user expressions, which IPython evaluates without
input transformers or ``run_cell``.

This stops the generic ways of rigging a test; an attack aimed at the guard itself is
possible in principle (all of it lives in one process), which is why the kernel also runs
in a sandbox and why the report flags every restored object for a human to see.
"""
from __future__ import annotations

import functools
import importlib
import json
import sys
import types
import warnings

# Modules whose callables and classes the hidden tests and checks rely on.
TRUSTED = ("builtins", "math", "torch", "torch.nn", "torch.nn.functional", "torch.linalg",
           "torch.testing", "numpy", "course_lib")
# IPython / ipykernel attributes through which a cell runs and reports its errors.
SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
SYS_HOOKS = ("excepthook", "displayhook", "stdout", "stderr", "breakpointhook")
HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE

_state: dict = {}
_MISSING = object()
# Event callbacks that libraries register after start-up (matplotlib's inline backend).
TRUSTED_CALLBACKS = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline", "ipywidgets")


def _quiet(function):
    """Looking at every attribute of torch touches deprecated ones: no warnings in the notebook."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(*args, **kwargs)
    return wrapper


def _is_machinery(value) -> bool:
    """Callables, classes, modules and descriptors: what a test calls. Data (counters, caches)
    is left alone so that restoring never undoes a library's own bookkeeping."""
    return callable(value) or isinstance(value, types.ModuleType) or hasattr(type(value), "__get__")


def _trusted_modules(extra: set[str]) -> dict[str, types.ModuleType]:
    """TRUSTED, course_lib's modules and those the instructor's cells import from."""
    return {name: module for name, module in list(sys.modules.items())
            if isinstance(module, types.ModuleType)
            and (name in TRUSTED or name in extra or name.startswith("course_lib."))}


def _snapshot_namespace(namespace: dict) -> dict:
    return {key: value for key, value in list(namespace.items()) if _is_machinery(value)}


def _classes(modules: dict[str, types.ModuleType]) -> dict[type, dict]:
    """Python classes defined in trusted modules (nn.MultiheadAttention, torch.Tensor, ...)."""
    found = {}
    for module in modules.values():
        for value in list(vars(module).values()):
            # Only classes written in Python can be changed: C types refuse new attributes.
            if (isinstance(value, type) and value not in found and value.__flags__ & HEAP_TYPE
                    and str(getattr(value, "__module__", "")).split(".")[0] in {t.split(".")[0] for t in TRUSTED}):
                found[value] = _snapshot_namespace(dict(vars(value)))
    import torch
    found.setdefault(torch.Tensor, _snapshot_namespace(dict(vars(torch.Tensor))))
    return found


def _shell_classes(shell) -> list[type]:
    kernel = getattr(shell, "kernel", None)
    mros = type(shell).__mro__ + (type(kernel).__mro__ if kernel is not None else ())
    return [cls for cls in dict.fromkeys(mros) if cls.__module__.split(".")[0] in ("IPython", "ipykernel")]


@_quiet
def install(bindings: dict[str, str]) -> str:
    """Record the trusted objects; ``bindings`` maps notebook names to ``module`` or ``module:attr``."""
    from IPython import get_ipython
    shell = get_ipython()
    resolved = {name: _resolve(target) for name, target in bindings.items()}
    # Modules the instructor's cells import from, within the trusted packages (matplotlib, say,
    # rebinds its own functions when a backend starts: not something the tests rely on).
    modules = _trusted_modules({target.split(":")[0] for target in bindings.values()
                                if target.split(".")[0].split(":")[0] in {t.split(".")[0] for t in TRUSTED}})
    kernel = getattr(shell, "kernel", None)
    shell.events.register("pre_run_cell", _before_cell)
    shell.events.register("post_run_cell", _after_cell)
    _state.update(
        shell=shell, kernel=kernel, test_cell=False, plain_tensors=None,
        modules={name: (module, _snapshot_namespace(vars(module))) for name, module in modules.items()},
        classes=_classes(modules),
        shell_classes={cls: _snapshot_namespace(dict(vars(cls))) for cls in _shell_classes(shell)},
        shell_attrs=set(vars(shell)), kernel_attrs=set(vars(kernel)) if kernel is not None else set(),
        lists={name: (getattr(shell, name), list(getattr(shell, name))) for name in SHELL_LISTS},
        events={event: list(callbacks) for event, callbacks in shell.events.callbacks.items()},
        handlers=dict(kernel.shell_handlers) if kernel is not None else {},
        sys_hooks={name: getattr(sys, name) for name in SYS_HOOKS},
        trace=(sys.gettrace(), sys.getprofile()),
    )
    _state["bindings"] = {name: value for name, value in resolved.items() if value is not _MISSING}
    return "guard-ok:installed"


def _before_cell(info=None) -> None:
    """A test cell runs with Tensor subclasses' ``__torch_function__`` off: a student's tensor
    cannot answer ``torch.allclose(...)`` with True for itself."""
    if _state.get("test_cell"):
        import torch
        _state["test_cell"] = False
        _state["plain_tensors"] = torch._C.DisableTorchFunctionSubclass()
        _state["plain_tensors"].__enter__()


def _after_cell(result=None) -> None:
    if _state.get("plain_tensors") is not None:
        _state.pop("plain_tensors").__exit__(None, None, None)
        _state["plain_tensors"] = None


def _resolve(target: str):
    """'module' or 'module:attr' (a submodule too: 'course_lib:checks') -> the object, imported now."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        if not attr:
            return module
        if not hasattr(module, attr):
            importlib.import_module(f"{module_name}.{attr}")
        return getattr(module, attr)
    except (ImportError, AttributeError):
        return _MISSING


def _restore_namespace(label: str, namespace: dict, original: dict, changed: list[str]) -> None:
    for key, value in original.items():
        if namespace.get(key, _MISSING) is not value:
            namespace[key] = value
            changed.append(f"{label}.{key}")


def _restore_class(cls: type, original: dict, changed: list[str]) -> None:
    current = vars(cls)
    for key in [k for k in current.keys() - original.keys() if _is_machinery(current[k])]:
        try:
            delattr(cls, key)
            changed.append(f"{cls.__qualname__}.{key}")
        except (AttributeError, TypeError):
            pass
    for key, value in original.items():
        if key not in ("__dict__", "__weakref__", "__doc__") and current.get(key, _MISSING) is not value:
            try:
                setattr(cls, key, value)
                changed.append(f"{cls.__qualname__}.{key}")
            except (AttributeError, TypeError):
                pass


def _restore_instance(obj, original_keys: set, classes: list[type], label: str, changed: list[str]) -> None:
    """Drop instance attributes that shadow a method (``shell.run_cell = ...``)."""
    methods = {key for cls in classes for key, value in vars(cls).items() if callable(value)}
    for key in [k for k in vars(obj) if k not in original_keys and k in methods]:
        delattr(obj, key)
        changed.append(f"{label}.{key}")


@_quiet
def _repair() -> list[str]:
    changed: list[str] = []
    shell, kernel = _state["shell"], _state["kernel"]
    for name, (module, original) in _state["modules"].items():
        _restore_namespace(name, vars(module), original, changed)
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            changed.append(f"sys.modules[{name!r}]")
    for cls, original in {**_state["classes"], **_state["shell_classes"]}.items():
        _restore_class(cls, original, changed)
    classes = list(_state["shell_classes"])
    _restore_instance(shell, _state["shell_attrs"], classes, "shell", changed)
    if kernel is not None:
        _restore_instance(kernel, _state["kernel_attrs"], classes, "kernel", changed)
        if kernel.shell_handlers != _state["handlers"]:
            kernel.shell_handlers.clear()
            kernel.shell_handlers.update(_state["handlers"])
            changed.append("kernel.shell_handlers")
    for name, (original_list, items) in _state["lists"].items():
        if getattr(shell, name) is not original_list or original_list != items:
            original_list[:] = items
            setattr(shell, name, original_list)
            changed.append(f"shell.{name}")
    for event, callbacks in shell.events.callbacks.items():
        kept = [c for c in callbacks if c in _state["events"].get(event, [])
                or str(getattr(c, "__module__", "")).split(".")[0] in TRUSTED_CALLBACKS]
        kept += [c for c in _state["events"].get(event, []) if c not in kept]  # unregistered ones come back
        if kept != callbacks:
            callbacks[:] = kept
            changed.append(f"shell.events[{event!r}]")
    for name, value in _state["sys_hooks"].items():
        if getattr(sys, name) is not value:
            setattr(sys, name, value)
            changed.append(f"sys.{name}")
    if (sys.gettrace(), sys.getprofile()) != _state["trace"]:
        sys.settrace(_state["trace"][0])
        sys.setprofile(_state["trace"][1])
        changed.append("sys.settrace")
    return changed


def restore() -> str:
    """Before a test cell: put every trusted object back; returns what had been replaced."""
    changed = _repair()
    _state["test_cell"] = True
    user_ns = _state["shell"].user_ns
    for name, value in _state["bindings"].items():
        if user_ns.get(name, _MISSING) is not value:
            user_ns[name] = value
            changed.append(f"notebook name {name}")
    return "guard-ok:" + json.dumps(changed)


def check() -> str:
    """After a test cell: what was replaced while it ran (then put back)."""
    return "guard-ok:" + json.dumps(_repair())

