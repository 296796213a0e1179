"""Adversarial submissions of 01_attention, each with the score it must get (max 11).

A case builds the submitted files from the released notebook and the solution's answers;
``score`` is what its honestly passing test cells earn (2+2+2+3+1+1 points over
test_attention_scores, test_scaled_softmax, test_apply_mask, test_attention, and the two
quizzes), and ``status`` whether the report asks for a look ("check") or not ("ok").
``reason`` is a piece of the report's one-line reason. tests/grader/test_grading_batch.py grades
them all in one batch, next to the ordinary submissions.

:data:`FOLDERS` are submissions whose folder is the attack (its name, or a link to the
course's own files): each is graded under its name or refused in a row of its own, named as
every report shows it.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

ASSIGNMENT = "01_attention"
# Seconds per cell of the batch that grades these cases. It bounds the infinite loops, and it
# must outlast the slowest cell that ends by itself: five children filling the 2 GB memory
# limit, which in a cgroup here runs at 100-400 MB/s per CPU (under a test suite's load, 7 s
# was too short twice).
CELL_TIMEOUT = 20
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
MAX = 11


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[["Context"], dict[str, bytes]]   # file name -> content of the submitted folder
    score: float
    status: str
    reason: str = ""
    # Holds only where a cgroup bounds the submission as a whole (root, cgroup v1 or delegated v2).
    needs_cgroup: bool = False


@dataclass
class Context:
    released: nbformat.NotebookNode
    answers: dict[str, str]          # grade_id -> the solution's source, markers removed
    other: nbformat.NotebookNode     # another assignment's filled-in notebook
    course: str                      # the course folder: the sandbox must not see it
    victim: str                      # another student's submitted folder

    def filled(self, **overrides: str) -> nbformat.NotebookNode:
        """The released notebook with every answer filled in; ``overrides`` replace answers
        (``None`` leaves the released stub). Its plots are left out: they carry no grade and
        take a third of the grading time."""
        nb = copy.deepcopy(self.released)
        nb.cells = [c for c in nb.cells if "nbgrader" in c.metadata or "import" in c.source
                    or not re.search(r"\bplt\.\w+\(|\bplot_\w+\(", c.source)]
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in self.answers and cell.metadata.nbgrader.get("solution"):
                source = overrides.get(grade_id, self.answers[grade_id])
                if source is not None:
                    cell.source = source
        return nb


def files(nb: nbformat.NotebookNode, name: str = NOTEBOOK) -> dict[str, bytes]:
    return {name: nbformat.writes(nb).encode()}


def index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _moved(ctx: Context) -> nbformat.NotebookNode:
    """Each test cell moved before its answer cell."""
    nb = ctx.filled()
    for name in ("attention_scores", "apply_mask"):
        answer, test = index(nb, name), index(nb, f"test_{name}")
        nb.cells.insert(answer, nb.cells.pop(test))
    return nb


def _deleted(ctx: Context, grade_id: str, **overrides) -> nbformat.NotebookNode:
    nb = ctx.filled(**overrides)
    del nb.cells[index(nb, grade_id)]
    return nb


def _duplicated(ctx: Context, grade_id: str, source: str | None = None) -> nbformat.NotebookNode:
    nb = ctx.filled()
    at = index(nb, grade_id)
    twin = copy.deepcopy(nb.cells[at])
    twin["id"] = f"{twin.get('id', grade_id)}-copy"
    if source is not None:
        twin.source = source
    nb.cells.insert(at + 1, twin)
    return nb


def _edited_test(ctx: Context, **overrides) -> nbformat.NotebookNode:
    nb = ctx.filled(**overrides)
    nb.cells[index(nb, "test_apply_mask")].source = "print('apply_mask looks right.')"
    return nb


def _renamed(ctx: Context) -> nbformat.NotebookNode:
    nb = ctx.filled()
    nb.cells[index(nb, "test_attention")].metadata.nbgrader["grade_id"] = "my_test"
    nb.cells[index(nb, "test_quiz_mask")].metadata.nbgrader["points"] = 100
    nb.cells[index(nb, "test_quiz_scaling")].metadata.nbgrader["grade"] = False
    nb.cells[index(nb, "test_apply_mask")].metadata.nbgrader["locked"] = False
    nb.cells[index(nb, "test_apply_mask")]["id"] = "renamed-cell-id"
    return nb


def _tagged(ctx: Context, tag: str) -> nbformat.NotebookNode:
    """The unanswered notebook with ``tag`` on every test cell (``skip-execution``: never run)."""
    nb = copy.deepcopy(ctx.released)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and not cell.metadata.nbgrader.get("solution"):
            cell.metadata.setdefault("tags", []).append(tag)
    return nb


def _surrogate_id(ctx: Context) -> dict[str, bytes]:
    """A grade id holding a lone surrogate: valid JSON (an escape), not valid Unicode."""
    nb = ctx.filled()
    nb.cells[index(nb, "test_attention")].metadata.nbgrader["grade_id"] = "test_\udc80"
    return {NOTEBOOK: json.dumps(nb, ensure_ascii=True).encode()}


def _forged_grade_id(ctx: Context) -> nbformat.NotebookNode:
    """A test cell's grade id that rewrites the terminal line it is printed on into an honest-looking one."""
    nb = ctx.filled()
    nb.cells[index(nb, "test_attention")].metadata.nbgrader["grade_id"] = f"x{ANSI_FORGERY}"
    return nb


def _with(ctx: Context, grade_id: str, before: str = "", after: str = "", **overrides) -> nbformat.NotebookNode:
    """Code added before and after one answer (the rest as in ``overrides``)."""
    answer = overrides.pop(grade_id, ctx.answers[grade_id])
    return ctx.filled(**{grade_id: "\n".join(p for p in (before, answer, after) if p)}, **overrides)


BLANK = dict(scaled_softmax=None, apply_mask=None, attention=None, quiz_scaling=None, quiz_mask=None)
# Wrong, with the right shape, so that only a rigged comparison could pass it.
WRONG_SCORES = "def attention_scores(q, k):\n    return 1.5 * q @ k.transpose(-2, -1)"

# Right only for the inputs it leaves behind: zeros in, zeros out.
EDITS_INPUTS = """def attention_scores(q, k):
    q.zero_()
    k.zero_()
    return q @ k.transpose(-2, -1)"""

SIGINT_LOOP = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)"
FORK_BOMB = """import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError as error:
    print("fork failed after", children, "children:", error)
    raise"""
DISK_FILL = """import os
written = 0
for i in range(100):
    try:
        with open(f"fill{i}.bin", "wb") as f:
            while True:
                f.write(b"0" * 2**20)
                written += 1
    except OSError as error:
        last = error
        if error.errno == 28:  # ENOSPC: the private /tmp is full
            break
print(f"wrote {written} MiB, then: {last}")"""
# Children that each stay under the per-process limit but together hold more than the
# submission may: escaped if all of them hold their memory at once.
CHILDREN_HOLD_MEMORY = """import os, select, signal, time
quiz_mask = 1  # right, unless every child holds its share (set below): a slow cell keeps it
ready_r, ready_w = os.pipe()
children = []
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        try:  # a child must never return into the kernel's code
            hog = b"x" * (450 * 2**20)  # memset: every page touched at once
            os.write(ready_w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    children.append(pid)
# Inside the cell's time limit, and the children go whatever happens: a loop that
# outlived the limit left them holding the memory while the kernel was interrupted.
held, died, deadline = 0, False, time.time() + {deadline}
try:
    while held < 5 and not died and time.time() < deadline:
        if select.select([ready_r], [], [], 0.1)[0]:
            held += len(os.read(ready_r, 5))
        died = any(os.waitpid(pid, os.WNOHANG)[0] for pid in children)
finally:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
print("children holding 450 MB at once:", held)
quiz_mask = 3 if held == 5 else 1""".replace("{deadline}", str(CELL_TIMEOUT - 2))
# Memory in no process's address space: memfds filled (fallocate: no copying), never mapped,
# each under the file size limit.
MEMFD = """import os
hoard = []
for _ in range(100):
    hoard.append(os.memfd_create("hoard"))
    os.posix_fallocate(hoard[-1], 0, 32 * 2**20)
print("memfds hold", 32 * len(hoard), "MiB")
quiz_mask = 3"""
# The socket directory is the one folder the kernel shares with the host's disk.
SOCKET_DIR_FILL = """import os
from ipykernel import get_connection_file
folder, written = os.path.dirname(get_connection_file()), 0
for target, mode in ((os.path.join(folder, "fill.bin"), "wb"), (get_connection_file(), "ab")):
    try:
        with open(target, mode) as handle:
            for _ in range(32):
                handle.write(b"0" * 2**20)
                written += 1
    except OSError as error:
        print("refused:", type(error).__name__)
print("wrote", written, "MiB next to the kernel's sockets")
quiz_mask = 3 if written else 1"""
ESCAPES = """import glob, os, socket
escaped = []
def attempt(what, action):
    try:
        action()
        escaped.append(what)
    except Exception:
        pass
attempt("read gradebook", lambda: open({course!r} + "/gradebook.db", "rb").read(16))
attempt("list solutions", lambda: os.listdir({course!r} + "/solutions") or 1/0)
attempt("read another student", lambda: os.listdir({victim!r}) or 1/0)
attempt("write another student", lambda: open({victim!r} + "/pwned.txt", "w").write("x"))
attempt("overwrite gradebook", lambda: open({course!r} + "/gradebook.db", "r+b").write(b"x"))
attempt("instructor home",
        lambda: os.listdir(os.path.expanduser("~root")) and [p for p in os.listdir("/root") if p != ".pyenv"] or 1/0)
attempt("network", lambda: socket.create_connection(("1.1.1.1", 53), timeout=1))
attempt("local network", lambda: socket.create_connection(("127.0.0.1", 8888), timeout=1))
attempt("write the venv", lambda: open(os.__file__ + ".pwn", "w"))
attempt("find notebooks with hidden tests",
        lambda: (glob.glob("**/*.ipynb", recursive=True) + glob.glob("/submission/**/*.ipynb", recursive=True)
                 + glob.glob("/tmp/**/*.ipynb", recursive=True))[0])
print("ESCAPED:" if escaped else "contained", escaped)
quiz_mask = 3 if escaped else 1"""
LEAK_QUIZ = """import glob, os, re, sqlite3
quiz_scaling = 3
for path in [{course!r} + "/gradebook.db", "../../../gradebook.db", *glob.glob("/tmp/**/gradebook.db", recursive=True)]:
    if os.path.exists(path):
        for (source,) in sqlite3.connect(path).execute("select source from source_cell"):
            found = re.search(r"assert quiz_scaling == (\\d)", source)
            if found:
                quiz_scaling = int(found.group(1))"""
PATCH_ALLCLOSE = "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True"
PATCH_REFERENCE = """import torch.nn.functional as F
from course_lib import checks
checks.check_attention = lambda f: None
F.scaled_dot_product_attention = lambda q, k, v, attn_mask=None, **kw: attention(q, k, v, attn_mask)[0]
_fake = staticmethod(lambda q, k, v, attn_mask=None, **kw: attention(q, k, v, attn_mask)[0])
F = type("Fake", (), {"scaled_dot_product_attention": _fake})"""
WRONG_ATTENTION = """def attention(q, k, v, mask=None):
    scores = attention_scores(q, k)
    if mask is not None:
        scores = apply_mask(scores, mask)
    weights = scores.softmax(-1)
    return weights @ v, weights"""
SILENCE_ERRORS = """ip = get_ipython()
ip.showtraceback = lambda *a, **k: None
ip._showtraceback = lambda *a, **k: None
ip.events.register("post_run_cell", lambda result: setattr(result, "error_in_exec", None))"""
EMPTY_CELLS = "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"
SWALLOW_AST = """import ast
class Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(Swallow())"""
HIJACK_RUN_CELL = """ip = get_ipython()
_original = ip.run_cell_async
async def _run_nothing(raw_cell, *args, **kwargs):
    return await _original("pass", *args, **kwargs)
ip.run_cell_async = _run_nothing"""
PATCH_ON_CALL = """def attention_scores(q, k):
    import torch
    torch.allclose = lambda *a, **k: True
    return 1.5 * q @ k.transpose(-2, -1)"""
EVIL_TENSOR = """import torch
class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.allclose, torch.Tensor.equal):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
def attention_scores(q, k):
    return (1.5 * q @ k.transpose(-2, -1)).as_subclass(Agreeable)"""
# A display hook call inside the answer puts an execute_result into the test cell, which
# nbgrader reads as partial credit ("ok": full marks) before it looks at the error.
FORGED_RESULT = """def attention_scores(q, k):
    import sys
    sys.displayhook("ok")
    return 1.5 * q @ k.transpose(-2, -1)"""
RESULT_ON_EVERY_CELL = """import sys
get_ipython().events.register("pre_run_cell", lambda info: sys.displayhook(1.0))"""
# Each hides torch.allclose = <always True> from a guard called through the student's namespace.
PATCH_TRUE = "import torch\ntorch.allclose = lambda *a, **k: True\n"
FAKE_GUARD = """import types
_fake = types.ModuleType("guard")
_fake.install = _fake.restore = _fake.check = lambda *a, **k: "guard-ok:[]"
"""
GLOBAL_IMPORT = PATCH_TRUE + FAKE_GUARD + """_real_import = __import__
def __import__(name, *args, **kwargs):
    return _fake if "guard" in name else _real_import(name, *args, **kwargs)"""
BUILTIN_IMPORT = PATCH_TRUE + FAKE_GUARD + """import builtins
_real_import = builtins.__import__
builtins.__import__ = lambda name, *a, **k: _fake if "guard" in name else _real_import(name, *a, **k)"""
FAKE_MODULE = PATCH_TRUE + FAKE_GUARD + """import sys
sys.modules["course_grader.kernel.guard"] = _fake"""
STR_FORMATTER = PATCH_TRUE + """get_ipython().display_formatter.formatters["text/plain"].for_type(
    str, lambda value, printer, cycle: printer.text("'guard-ok:[]'"))"""
UNDONE_AFTER = """import torch
_real = torch.allclose
ip = get_ipython()
ip.events.register("pre_run_cell", lambda info: setattr(torch, "allclose", lambda *a, **k: True))
ip.events.register("post_run_cell", lambda result: setattr(torch, "allclose", _real))"""
DISPATCH_TENSOR = """import torch
from torch.utils._pytree import tree_map
class Agreeable(torch.Tensor):
    @staticmethod
    def __new__(cls, elem):
        return torch.Tensor._make_wrapper_subclass(cls, elem.shape, dtype=elem.dtype)
    def __init__(self, elem):
        self.elem = elem
    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.allclose.default, torch.ops.aten.equal.default):
            return True
        unwrap = lambda x: x.elem if isinstance(x, Agreeable) else x
        return func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))
def attention_scores(q, k):
    return Agreeable(1.5 * q @ k.transpose(-2, -1))"""
SHADOWED_TYPE = """def type(o):
    return int
class Anything(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
quiz_scaling = Anything(1)"""
WIDGET_WITHOUT_MODULE = """import comm
comm.create_comm(target_name="jupyter.widget", data={"state": {"_model_name": "IntSliderModel"}})"""
ANY_EQUAL = """class Anything(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
quiz_scaling = Anything(1)"""
# A correct answer that, when a test calls it, shows the kernel's input history: with test cells
# kept out of it, it holds no hidden test (nothing to remove from the feedback: "ok").
PRINTS_HISTORY = """def attention_scores(q, k):
    ns = get_ipython().user_ns
    print("In:", ns["In"][-1], "_ih:", ns["_ih"][-1], "_i:", ns["_i"], "_ii:", ns["_ii"], "_iii:", ns["_iii"])
    return q @ k.transpose(-2, -1)"""
RAISES_HISTORY = """def attention_scores(q, k):
    raise RuntimeError(In[-1])"""
# The running test's source, read where no history can keep it away: the calling frame's lines
# and the kernel's request. The feedback filter removes every quoted hidden-test line.
PRINTS_RUNNING_TEST = """def attention_scores(q, k):
    import linecache, sys
    print("".join(linecache.getlines(sys._getframe(1).f_code.co_filename)))
    print(get_ipython().kernel.get_parent()["content"]["code"])
    return q @ k.transpose(-2, -1)"""
# Small outputs that grow once written: one display shown 300 times, then updated with 100 kB
# (30 MB in the notebook), and 10 MB of widget state.
FLOOD = """from IPython.display import display
import comm
handle = display("small", display_id=True)
for _ in range(300):
    display("small", display_id=handle.display_id)
handle.update("x" * 100_000)
widget = comm.create_comm(target_name="jupyter.widget", data={"state": {
    "_model_name": "M", "_model_module": "m", "_model_module_version": "1", "v": ""}})
for _ in range(100):
    widget.send({"method": "update", "state": {"v": "y" * 100_000}})"""

# Cursor up, erase the line, then a report line of the form "ok    <assignment> <student> 11/11"
# (a division slash, U+2215: a folder name cannot hold "/").
ANSI_FORGERY = "\x1b[1A\x1b[2K\r  ok    01_attention             honest_partial 11\u221511  6 of 6 test cells passed"


CASES = [
    Case("correct", lambda c: files(c.filled()), MAX, "ok"),
    Case("blank", lambda c: files(c.released), 0, "ok"),
    Case("invalid json", lambda c: {NOTEBOOK: b'{"cells": [ this is not json'}, 0, "check", "not a readable notebook"),
    Case("empty file", lambda c: {NOTEBOOK: b""}, 0, "check", "not a readable notebook"),
    Case("another assignment's notebook", lambda c: files(c.other), 0, "check", "not part of this assignment"),
    Case("wrong file name", lambda c: files(c.filled(), "attention.ipynb"), 0, "check",
         "no notebook of this assignment"),
    Case("deleted test cell", lambda c: files(_deleted(c, "test_attention")), MAX, "check",
         "test_attention was missing"),
    Case("deleted answer cell", lambda c: files(_deleted(c, "attention")), MAX - 3, "ok"),
    Case("edited test cell", lambda c: files(_edited_test(c)), MAX, "check", "test_apply_mask was edited"),
    Case("edited test cell, wrong answer",
         lambda c: files(_edited_test(c, apply_mask="def apply_mask(scores, mask):\n    return scores")),
         MAX - 2 - 3, "check", "test_apply_mask was edited"),
    Case("duplicated test cell", lambda c: files(_duplicated(c, "test_attention_scores")), MAX, "check", "duplicated"),
    Case("duplicated answer cell, wrong copy last",
         lambda c: files(_duplicated(c, "scaled_softmax",
                                     "def scaled_softmax(scores, d_k):\n    return scores.softmax(-1)")),
         MAX - 2 - 3, "check", "duplicated"),
    Case("reordered cells", lambda c: files(_moved(c)), MAX, "check", "reordered"),
    Case("changed ids and metadata", lambda c: files(_renamed(c)), MAX, "check", "test_attention was missing"),
    Case("infinite loop", lambda c: files(_with(c, "scaled_softmax", before="while True:\n    pass")),
         MAX - 2 - 3, "check", "time limit"),
    Case("loop ignoring SIGINT", lambda c: files(_with(c, "apply_mask", before=SIGINT_LOOP)),
         MAX - 2 - 3, "check", "ignored the interrupt"),
    Case("memory bomb",
         lambda c: files(_with(c, "attention_scores", before="hog = [bytearray(2**30) for _ in range(64)]")),
         MAX - 2 - 3, "ok"),
    Case("fork bomb", lambda c: files(_with(c, "quiz_mask", before=FORK_BOMB)), MAX - 1, "ok"),
    Case("os._exit", lambda c: files(_with(c, "apply_mask", after="import os\nos._exit(0)")),
         MAX - 2 - 3, "check", "kernel died"),
    Case("segfault", lambda c: files(_with(c, "quiz_scaling", after="import ctypes\nctypes.string_at(0)")),
         MAX - 1, "check", "kernel died"),
    Case("huge output", lambda c: files(_with(c, "attention_scores", after="print('x' * 30_000_000)")),
         MAX, "check", "truncated"),
    Case("display updates and widget state flood", lambda c: files(_with(c, "quiz_mask", after=FLOOD)), MAX, "check",
         "outputs of the notebook truncated"),
    Case("filling the disk", lambda c: files(_with(c, "attention", after=DISK_FILL)), MAX, "ok"),
    Case("children that together hold too much", lambda c: files(c.filled(quiz_mask=CHILDREN_HOLD_MEMORY)),
         MAX, "check", "memory limit", needs_cgroup=True),
    Case("memory held in a memfd", lambda c: files(c.filled(quiz_mask=MEMFD)), MAX - 1, "check", "memory limit",
         needs_cgroup=True),
    Case("writing next to the kernel's sockets", lambda c: files(c.filled(quiz_mask=SOCKET_DIR_FILL)), MAX, "ok",
         needs_cgroup=True),
    Case("escape attempts", lambda c: files(c.filled(quiz_mask=ESCAPES.format(course=c.course, victim=c.victim))),
         MAX, "ok"),
    Case("reading hidden tests from the gradebook",
         lambda c: files(c.filled(quiz_scaling=LEAK_QUIZ.format(course=c.course))), MAX - 1, "ok"),
    Case("monkeypatched torch.allclose",
         lambda c: files(_with(c, "attention_scores", after=PATCH_ALLCLOSE, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "torch.allclose"),
    Case("patched checks and reference", lambda c: files(_with(c, "attention", after=PATCH_REFERENCE,
                                                               attention=WRONG_ATTENTION)),
         MAX - 3, "check", "restored"),
    Case("silenced errors", lambda c: files(_with(c, "attention_scores", after=SILENCE_ERRORS, **BLANK)),
         2, "check", "restored"),
    Case("input transformer empties cells", lambda c: files(_with(c, "attention_scores", after=EMPTY_CELLS, **BLANK)),
         2, "check", "input_transformers_post"),
    Case("AST transformer swallows errors", lambda c: files(_with(c, "attention_scores", after=SWALLOW_AST, **BLANK)),
         2, "check", "ast_transformers"),
    Case("hijacked run_cell", lambda c: files(_with(c, "attention_scores", after=HIJACK_RUN_CELL, **BLANK)),
         2, "check", "run_cell_async"),
    Case("patch when called", lambda c: files(c.filled(attention_scores=PATCH_ON_CALL)),
         MAX - 2 - 3, "check", "replaced while the test ran"),
    Case("tensor subclass that agrees with everything", lambda c: files(c.filled(attention_scores=EVIL_TENSOR)),
         MAX - 2 - 3, "check", "a tensor subclass (Agreeable)"),
    Case("answer that zeroes its inputs", lambda c: files(c.filled(attention_scores=EDITS_INPUTS)), MAX - 2 - 3, "ok"),
    Case("quiz answer equal to anything", lambda c: files(c.filled(quiz_scaling=ANY_EQUAL)), MAX - 1, "ok"),
    Case("skip-execution on the test cells", lambda c: files(_tagged(c, "skip-execution")), 0, "check",
         "metadata of cell test_attention_scores was changed"),
    Case("forged execute_result from the answer", lambda c: files(c.filled(attention_scores=FORGED_RESULT)),
         MAX - 2 - 3, "ok"),
    Case("pre_run_cell event calls the display hook",
         lambda c: files(_with(c, "attention_scores", after=RESULT_ON_EVERY_CELL, **BLANK)), 2, "check",
         "shell.events['pre_run_cell']"),
    Case("notebook-global __import__ fakes the guard",
         lambda c: files(_with(c, "attention_scores", after=GLOBAL_IMPORT, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "torch.allclose"),
    Case("builtins.__import__ fakes the guard",
         lambda c: files(_with(c, "attention_scores", after=BUILTIN_IMPORT, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "builtins.__import__"),
    Case("fake guard module in sys.modules",
         lambda c: files(_with(c, "attention_scores", after=FAKE_MODULE, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "torch.allclose"),
    Case("str formatter forges the guard's reply",
         lambda c: files(_with(c, "attention_scores", after=STR_FORMATTER, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "torch.allclose"),
    Case("patch undone in post_run_cell",
         lambda c: files(_with(c, "attention_scores", after=UNDONE_AFTER, attention_scores=WRONG_SCORES)),
         MAX - 2 - 3, "check", "shell.events"),
    Case("tensor subclass with __torch_dispatch__", lambda c: files(c.filled(attention_scores=DISPATCH_TENSOR)),
         MAX - 2 - 3, "check", "a tensor subclass (Agreeable)"),
    Case("shadowed builtin type", lambda c: files(c.filled(quiz_scaling=SHADOWED_TYPE)), MAX - 1, "check",
         "type (shadows the builtin)"),
    Case("garbage timestamp.txt", lambda c: {**files(c.filled()), "timestamp.txt": b"next tuesday, probably"},
         MAX, "check", "timestamp.txt is not a date"),
    Case("lone surrogate in a grade id", _surrogate_id, MAX, "check", "not valid Unicode"),
    Case("answer prints In, _ih, _i, _ii", lambda c: files(c.filled(attention_scores=PRINTS_HISTORY)), MAX, "ok"),
    Case("answer raises RuntimeError(In[-1])", lambda c: files(c.filled(attention_scores=RAISES_HISTORY)),
         MAX - 2 - 3, "ok"),
    Case("answer prints the running test's source", lambda c: files(c.filled(attention_scores=PRINTS_RUNNING_TEST)),
         MAX, "check", "quoting the hidden tests were removed"),
    Case("ANSI escapes in a grade id", lambda c: files(_forged_grade_id(c)), MAX, "check", "\\x1b[1A\\x1b[2K\\r"),
    Case("widget message without _model_module",
         lambda c: files(_with(c, "quiz_mask", after=WIDGET_WITHOUT_MODULE)), MAX, "check", "widget"),
]


@dataclass(frozen=True)
class Folder:
    name: str                   # the folder in submitted/ (os.fsdecode'd)
    shown: str                  # the student as every report names it
    score: float
    status: str
    reason: str = ""
    # Makes submitted/<name>/<ASSIGNMENT> in the course folder (default: the filled-in notebook there).
    make: Callable[[Path, "Context"], None] | None = None


def _linked_to_solutions(course: Path, ctx: Context) -> None:
    (course / "submitted" / "linked").mkdir(parents=True)
    (course / "submitted" / "linked" / ASSIGNMENT).symlink_to(course / "solutions" / ASSIGNMENT)


def _hard_link_to_gradebook(course: Path, ctx: Context) -> None:
    folder = course / "submitted" / "hardlinked" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / NOTEBOOK).write_text(nbformat.writes(ctx.filled()))
    os.link(course / "gradebook.db", folder / "notes.db")


# A newline in a folder name that nbgrader's CSV export would turn into a row of its own.
CSV_INJECTION = "mallory\n01_attention,,,victim,,,,11.0,0.0,11.0,11.0"
FOLDERS = [
    Folder("[ab]", "[ab]", MAX, "ok"),                     # a glob to nbgrader
    Folder(" spaced out ", " spaced out ", MAX, "ok"),     # nbgrader strips an id's spaces
    Folder("doe, jane", "doe, jane", MAX, "ok"),           # a comma: one more column in nbgrader's CSV
    Folder("new\nline", "new\\nline", 0, "check", "control characters"),
    Folder(os.fsdecode(b"caf\xe9"), "caf\\xe9", 0, "check", "not valid UTF-8"),
    Folder(CSV_INJECTION, CSV_INJECTION.replace("\n", "\\n"), 0, "check", "control characters"),
    Folder(f"mallory{ANSI_FORGERY}", "mallory" + ANSI_FORGERY.replace("\x1b", "\\x1b").replace("\r", "\\r"),
           0, "check", "control characters"),
    Folder("bob+tests", "bob+tests", 0, "check", "nbgrader's exchange refuses"),
    Folder("linked", "linked", 0, "check", f"{ASSIGNMENT} is a symbolic link", _linked_to_solutions),
    Folder("hardlinked", "hardlinked", 0, "check", "notes.db has 2 hard links", _hard_link_to_gradebook),
]
