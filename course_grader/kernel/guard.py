"""The grading guard: runs inside a graded kernel, keeps student code from rigging the tests.

Hidden tests run in the same interpreter as the student's code, which could redefine what
the tests rely on: ``torch.allclose = lambda *a, **k: True``, a course_lib check, the
reference ``F.scaled_dot_product_attention``, a builtin (``def type(o): return int``),
IPython's ``run_cell``, input transformers or event callbacks (so that test cells never run,
or a patch is undone before anyone looks), ``showtraceback`` (so that failures print
nothing), or simply rebind ``F`` or ``torch`` in the notebook's namespace.

The grader (course_grader.worker.execute) runs :func:`install` before the first cell, while
nothing of the student's has run: it registers a handler for the grader's own shell message
(:data:`REQUEST`), and the first request, ``snapshot``, imports the modules the tests use
and records the objects they hold (as a request sees them: outside a cell's execution,
where IPython swaps some of them).
Before every test cell the grader asks it to ``restore``: every recorded object is put back,
the notebook names that the instructor's cells import are rebound, names shadowing a
builtin and event callbacks registered since install are set aside for the test (and put
back after it). The test cell then runs with a torch function mode that fails any call on
a tensor subclass the guard does not know (a tensor cannot decide its own comparisons,
through ``__torch_function__`` or ``__torch_dispatch__``). After the test cell, ``check``
reports what was replaced while it ran, and the grader fails that cell.

Test cells hold hidden tests, which the student's later code must not read back: the grader
runs them without storing history (``In``, ``_ih``, ``_i*`` never hold them), and ``check``
removes their source from what outlives the cell: IPython's linecache entries (which
``inspect`` and tracebacks read) and the frames that ran the cell (whose locals hold its source,
for code that kept a frame). While the test runs, code it calls can still read its source
(the request, the calling frames): the feedback is filtered for hidden-test lines
(course_grader.worker.preprocessors.RedactHiddenTests) before it is written.

Replies are signed (HMAC-SHA256 with a key the grader passed to :func:`install`, over the
grader's nonce and the answer): nothing in the student's namespace (``__import__``,
``sys.modules``, formatters, builtins) is on the way, and a silent guard, or a reply that is
malformed or unsigned, counts as tampering. What libraries change in themselves (functions
defined in site-packages: transformers' ``Module.smart_apply``, torch._dynamo's wrapped
``manual_seed``) is adopted, not reported.

All of this lives in the student's process, so an attack written against the guard itself
(reading its key, a patch that removes itself when called) is possible in principle: the
kernel also runs in a sandbox, and the report flags everything the guard saw.
"""
from __future__ import annotations

import _hashlib
import builtins
import functools
import importlib
import inspect
import linecache
import sys
import sysconfig
import types
import warnings

# The grader's shell message to the guard, and the guard's reply (course_grader.worker.execute).
REQUEST, REPLY = "course_guard_request", "course_guard_reply"
# Modules whose callables and classes the hidden tests and checks rely on.
TRUSTED = ("builtins", "math", "torch", "torch.nn", "torch.nn.functional", "torch.linalg",
           "torch.testing", "numpy", "course_lib")
# IPython / ipykernel attributes through which a cell runs and reports its errors.
SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
SYS_HOOKS = ("excepthook", "displayhook", "stdout", "stderr", "breakpointhook")
HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE
# Event callbacks that libraries register after start-up (matplotlib's inline backend): set
# aside during test cells like any other, but not reported.
TRUSTED_CALLBACKS = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline", "ipywidgets")
# Builtins a notebook legitimately holds under its own name (IPython's, the module's own).
NOT_SHADOWING = {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__builtins__", "__builtin__"}
# Where libraries live: a function whose code is defined there is a library's own change.
LIBRARIES = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})

# Frames of generators and coroutines: clearing a suspended one would finalise it (the kernel's own).
SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR

_state: dict = {}
_MISSING = object()
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]


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


def _library_code(value) -> bool:
    """A Python function (or method) defined in an installed library, not in a notebook."""
    code = getattr(getattr(value, "__func__", value), "__code__", None)
    return isinstance(code, types.CodeType) and code.co_filename.startswith(LIBRARIES)


def _reinitialised(current, module) -> bool:
    """``current`` is ``module`` initialised again by its library (transformers' lazy module can
    be): the module now in sys.modules under its name, of its class, from its file. Read with
    C descriptors only: nothing of a student's object runs."""
    if type(current) is not type(module) or not isinstance(module, types.ModuleType):
        return False
    namespace, original = _MODULE_DICT.__get__(current), _MODULE_DICT.__get__(module)
    return (sys.modules.get(original.get("__name__")) is current
            and namespace.get("__file__") == original.get("__file__"))


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


def _tensor_types() -> set[type]:
    """torch.Tensor and the subclasses torch itself defines (Parameter, Buffer, ...)."""
    import torch
    found, todo = set(), [torch.Tensor]
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__.split(".")[0] == "torch":
            found.add(cls)
            todo += cls.__subclasses__()
    return found


def _shell_classes(shell) -> list[type]:
    kernel = getattr(shell, "kernel", None)
    mros = type(shell).__mro__ + (type(kernel).__mro__ if kernel is not None else ())
    return [cls for cls in dict.fromkeys(mros) if cls.__module__.split(".")[0] in ("IPython", "ipykernel")]


def install(bindings: dict[str, str], instructor_names: list[str], key: str) -> None:
    """Answer the grader's requests from now on (the first one, ``snapshot``, records what to trust).

    ``bindings`` maps notebook names to ``module`` or ``module:attr``; ``instructor_names``
    are the names the instructor's cells define (never set aside as shadowing a builtin);
    ``key`` (hex) signs every reply.
    """
    from IPython import get_ipython
    shell = get_ipython()
    _state.update(shell=shell, kernel=shell.kernel, bindings=bindings, instructor_names=set(instructor_names))
    shell.kernel.shell_handlers[REQUEST] = _handler(bytes.fromhex(key), shell.kernel)


@_quiet
def snapshot() -> list[str]:
    """Record the trusted objects, as a request sees them (outside any cell's execution)."""
    from torch.overrides import TorchFunctionMode
    shell, kernel, bindings = _state["shell"], _state["kernel"], _state["bindings"]
    resolved = {name: _resolve(target) for name, target in bindings.items()}
    # Modules the instructor's cells import from, within the trusted packages (matplotlib, say,
    # rebinds its own functions when a backend starts: not something the tests rely on).
    modules = _trusted_modules({target.split(":")[0] for target in bindings.values()
                                if target.split(".")[0].split(":")[0] in {t.split(".")[0] for t in TRUSTED}})
    shell.events.register("pre_run_cell", _before_cell)
    shell.events.register("post_run_cell", _after_cell)
    known = _tensor_types()

    class KnownTensorsOnly(TorchFunctionMode):
        """Fails any torch call on a tensor of a class the guard does not know."""

        def __torch_function__(self, func, types_, args=(), kwargs=None):
            strangers = [t for t in types_ if t not in known]
            if strangers:
                _state["strangers"].update(t.__qualname__ for t in strangers)
                raise TypeError(f"a tensor subclass ({strangers[0].__qualname__}) is not allowed in a test")
            return func(*args, **(kwargs or {}))

    _state.update(
        test_cell=False, mode=None, mode_class=KnownTensorsOnly, strangers=set(),
        modules={name: (module, _snapshot_namespace(vars(module))) for name, module in modules.items()},
        classes=_classes(modules),
        shell_classes={cls: _snapshot_namespace(dict(vars(cls))) for cls in _shell_classes(shell)},
        shell_attrs=set(vars(shell)), kernel_attrs=set(vars(kernel)),
        lists={name: (getattr(shell, name), list(getattr(shell, name))) for name in SHELL_LISTS},
        events={event: list(callbacks) for event, callbacks in shell.events.callbacks.items()},
        handlers=dict(kernel.shell_handlers),
        sys_hooks={name: getattr(sys, name) for name in SYS_HOOKS},
        trace=(sys.gettrace(), sys.getprofile()),
        user_ns=dict(shell.user_ns), set_aside={}, callbacks={},
        bindings={name: value for name, value in resolved.items() if value is not _MISSING},
    )
    return []


def _handler(key: bytes, kernel):
    """The shell handler for REQUEST: runs ``snapshot``, ``restore`` or ``check`` and sends a signed REPLY.

    The body is ``nonce`` and the repr of the list of changes, signed with C functions bound
    here, at install: nothing the student can rebind later (json, hmac, repr) is on the way.
    """
    sign, text, send = _hashlib.hmac_digest, builtins.repr, kernel.session.send
    operations = {"snapshot": snapshot, "restore": restore, "check": check}

    def handle(stream, ident, parent):
        content = parent.get("content", {})
        nonce = str(content.get("nonce", ""))
        try:
            changed = operations[content.get("op")]()
        except Exception as error:  # noqa: BLE001 - the grader reads any failure as tampering
            changed = [f"the guard failed: {type(error).__name__}"]
        body = nonce + "\n" + text(changed)
        send(stream, REPLY, {"body": body, "mac": sign(key, body.encode(), "sha256").hex()}, parent, ident)
    return handle


def _before_cell(info=None) -> None:
    """A test cell runs in a torch function mode that refuses unknown tensor subclasses."""
    if _state.get("test_cell"):
        _state["test_cell"] = False
        frame, _state["frames"] = sys._getframe(1), []
        while frame is not None:  # the frames running the cell, which hold its source
            _state["frames"].append(frame)
            frame = frame.f_back
        _state["mode"] = _state["mode_class"]()
        _state["mode"].__enter__()


def _after_cell(result=None) -> None:
    if _state.get("mode") is not None:
        _state.pop("mode").__exit__(None, None, None)
        _state["mode"] = None


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
        current = namespace.get(key, _MISSING)
        if current is value:
            continue
        if current is not _MISSING and _library_code(current):
            original[key] = current  # a library's own wrapper (torch._dynamo's manual_seed)
            continue
        namespace[key] = value
        changed.append(f"{label}.{key}")


def _restore_class(cls: type, original: dict, changed: list[str]) -> None:
    current = vars(cls)
    for key in [k for k in current.keys() - original.keys() if _is_machinery(current[k])]:
        if _library_code(current[key]):
            original[key] = current[key]  # a library's addition (transformers' Module.smart_apply)
            continue
        try:
            delattr(cls, key)
            changed.append(f"{cls.__qualname__}.{key}")
        except (AttributeError, TypeError):
            pass
    for key, value in original.items():
        now = current.get(key, _MISSING)
        if key in ("__dict__", "__weakref__", "__doc__") or now is value:
            continue
        if now is not _MISSING and _library_code(now):
            original[key] = now
            continue
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
    # builtins first, with dict operations only: the rest of the guard calls them.
    for key, value in _state["modules"]["builtins"][1].items():
        if builtins.__dict__.get(key, _MISSING) is not value:
            builtins.__dict__[key] = value
            changed.append(f"builtins.{key}")
    for name, (module, original) in _state["modules"].items():
        _restore_namespace(name, vars(module), original, changed)
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            changed.append(f"sys.modules[{name!r}]")
    for cls, original in {**_state["classes"], **_state["shell_classes"]}.items():
        _restore_class(cls, original, changed)
    classes = list(_state["shell_classes"])
    _restore_instance(shell, _state["shell_attrs"], classes, "shell", changed)
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
    for name, value in _state["sys_hooks"].items():
        if getattr(sys, name) is not value:
            setattr(sys, name, value)
            changed.append(f"sys.{name}")
    if (sys.gettrace(), sys.getprofile()) != _state["trace"]:
        sys.settrace(_state["trace"][0])
        sys.setprofile(_state["trace"][1])
        changed.append("sys.settrace")
    if shell.user_ns.get("__builtins__") is not builtins:
        shell.user_ns["__builtins__"] = builtins
        changed.append("notebook name __builtins__")
    return changed


def _set_aside_callbacks(changed: list[str]) -> None:
    """Only the callbacks present at install run during a test cell; the others wait."""
    for event, callbacks in _state["shell"].events.callbacks.items():
        original = _state["events"].get(event, [])
        later = [c for c in callbacks if c not in original]
        _state["callbacks"][event] = later
        callbacks[:] = original
        if [c for c in later if str(getattr(c, "__module__", "")).split(".")[0] not in TRUSTED_CALLBACKS]:
            changed.append(f"shell.events[{event!r}]")


def _put_back_callbacks(changed: list[str]) -> None:
    """After a test cell: callbacks registered while it ran are tampering; set-aside ones return."""
    for event, callbacks in _state["shell"].events.callbacks.items():
        original = _state["events"].get(event, [])
        if callbacks != original:
            changed.append(f"shell.events[{event!r}]")
        callbacks[:] = original + _state["callbacks"].pop(event, [])


def restore() -> list[str]:
    """Before a test cell: put every trusted object back; returns what had been replaced."""
    changed = _repair()
    _set_aside_callbacks(changed)
    user_ns, installed = _state["shell"].user_ns, _state["user_ns"]
    for name in [n for n in user_ns if n in builtins.__dict__ and n not in NOT_SHADOWING
                 and n not in _state["instructor_names"] and user_ns[n] is not installed.get(n, _MISSING)]:
        value = _state["set_aside"][name] = user_ns.pop(name)
        if callable(value):
            changed.append(f"notebook name {name} (shadows the builtin)")
    for name, value in list(_state["bindings"].items()):
        # A name the instructor imports only later is not bound yet: nothing to fake there.
        current = user_ns.get(name, value)
        if current is value:
            continue
        if _reinitialised(current, value):
            _state["bindings"][name] = current
            continue
        user_ns[name] = value
        changed.append(f"notebook name {name}")
    _state["strangers"].clear()
    _state["test_cell"] = True
    _state["cached"] = set(linecache.cache)
    return changed


def _forget_test_source() -> None:
    """After a test cell: its source out of linecache and IPython's cell names, out of the frames
    that ran it (finished ones: a running or suspended frame is left alone) and out of
    IPython's last result."""
    shell = _state["shell"]
    for name in set(linecache.cache) - _state.pop("cached", set(linecache.cache)):
        linecache.cache.pop(name, None)
        getattr(shell.compile, "_filename_map", {}).pop(name, None)
    for frame in _state.pop("frames", []):
        if not frame.f_code.co_flags & SUSPENDABLE:
            try:
                frame.clear()
            except RuntimeError:  # still running (the kernel's own loop)
                pass
    info = getattr(shell.last_execution_result, "info", None)
    for name in ("raw_cell", "transformed_cell"):
        if isinstance(getattr(info, name, None), str):
            setattr(info, name, "")


def check() -> list[str]:
    """After a test cell: what was replaced while it ran (then put back); its source forgotten."""
    _forget_test_source()
    changed = _repair()
    _put_back_callbacks(changed)
    changed += [f"a tensor subclass ({name})" for name in sorted(_state["strangers"])]
    set_aside, _state["set_aside"] = _state["set_aside"], {}
    for name, value in set_aside.items():
        _state["shell"].user_ns.setdefault(name, value)
    return changed
