"""nbgrader's Execute, hardened for untrusted notebooks (used by ``course grade``).

On top of nbgrader's Execute it
- runs the grading guard (course_grader.kernel.guard) around every test cell, over a
  channel of the grader's own (a shell message whose replies are signed with a key made
  for each kernel), and fails a test cell when the guard finds trusted objects replaced,
  stays silent or answers with anything but a signed reply to this very request;
- decides a test cell's result from what the grader saw: the cell passes when its execute
  reply is "ok" and it printed no error; an ``execute_result`` (which nbgrader would read
  as partial credit, and which a display hook or formatter can forge) is kept as a
  display, never as a score;
- survives a cell that ignores the interrupt or kills its kernel: that cell gets an error,
  the kernel is restarted, the cells before it are run again (outputs discarded) and
  grading goes on, so later cells still earn what they honestly pass;
- caps what a notebook keeps, so a flood cannot exhaust the grader's memory or make huge
  autograded notebooks and feedback: ``max_cell_output`` bytes of outputs per cell, and
  ``max_notebook_output`` bytes per notebook of everything the kernel sends that ends up in
  it (outputs of every kind, errors, display updates, times the outputs they update, widget
  state); an error is always kept (it decides the grade), its text cut at ``max_error``
  bytes; drops widget state that lacks the fields nbformat requires.

What happened goes to the worker's incidents (course_grader.worker.preprocessors).
"""
from __future__ import annotations

import ast
import hmac
import json
import secrets
import time
from pathlib import Path
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer, List, Unicode

from ..kernel import sandbox
from ..kernel.guard import REPLY, REQUEST
from ..protocol import Incident
from .preprocessors import incidents

WIDGET_FIELDS = ("_model_name", "_model_module", "_model_module_version")


def _error(ename: str, evalue: str) -> dict:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[cut at {limit} characters]"


def _complete_widget(state: dict) -> bool:
    return all(isinstance(state.get(name), str) for name in WIDGET_FIELDS)


def verified(reply: dict | None, key: str, nonce: str) -> list[str] | None:
    """The guard's list of changes if ``reply`` is its signed answer to ``nonce``; else None."""
    content = (reply or {}).get("content", {})
    body, mac = content.get("body"), content.get("mac")
    if (reply or {}).get("msg_type") != REPLY or not isinstance(body, str) or not isinstance(mac, str):
        return None
    try:
        expected = hmac.new(bytes.fromhex(key), body.encode(), "sha256").hexdigest()
        first, _, rest = body.partition("\n")
        changed = ast.literal_eval(rest)
    except (ValueError, SyntaxError, UnicodeError, MemoryError, RecursionError):
        return None
    if not hmac.compare_digest(expected, mac) or first != nonce:
        return None
    if not isinstance(changed, list) or not all(type(item) is str for item in changed):
        return None
    return changed


class GuardedExecute(Execute):
    guard = Bool(True, help="Run the grading guard around test cells.").tag(config=True)
    bindings = Dict(help="Notebook names the instructor's cells import, name -> 'module[:attr]' "
                         "(the guard rebinds them before each test cell).").tag(config=True)
    instructor_names = List(help="Names the instructor's cells define: never set aside as "
                                 "shadowing a builtin.").tag(config=True)
    max_cell_output = Integer(1_000_000, help="Bytes of output kept per cell.").tag(config=True)
    max_notebook_output = Integer(8_000_000, help="Bytes of outputs, display updates and widget state kept "
                                                  "per notebook.").tag(config=True)
    max_error = Integer(20_000, help="Bytes of an error's message and traceback kept.").tag(config=True)
    max_restarts = Integer(3, help="Kernel restarts per notebook before the rest is given up.").tag(config=True)
    ipc_dir = Unicode("", help="The sandboxed kernel's socket directory, sealed once the kernel is up "
                               "(empty: nothing to seal).").tag(config=True)
    guard_timeout = Integer(120, help="Seconds a guard call may take (installing imports the modules the "
                                      "tests use; a slow machine must not fail tests).").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._fatal: set[int] = set()     # cells that hung or killed the kernel: never replayed
        self._restarts = 0
        self._key = ""                    # the running kernel's guard key; empty: no guard installed
        self._output_bytes: dict[int, int] = {}
        self._notebook_bytes = 0
        self._over_notebook_cap = False
        self._status: dict[int, str] = {}  # cell index -> its execute reply's status
        self._sealed = False              # the running kernel's socket directory is sealed
        return super().preprocess(nb, resources, km)

    # ---- output caps ------------------------------------------------------------------
    def _charge(self, size: int) -> bool:
        """Count ``size`` bytes against the notebook's cap: False (and one incident) once it is spent."""
        self._notebook_bytes += size
        if self._notebook_bytes <= self.max_notebook_output:
            return True
        if not self._over_notebook_cap:
            self._over_notebook_cap = True
            incidents.append(Incident("output_truncated", f"outputs of the notebook truncated at "
                                                          f"{self.max_notebook_output} bytes"))
        return False

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "error":
            content = msg["content"]
            content["evalue"] = _cut(str(content.get("evalue", "")), self.max_error)
            content["traceback"] = [_cut("\n".join(map(str, content.get("traceback", []))), self.max_error)]
            # Always kept (it decides the grade); once the notebook's cap is spent, only a cell's first.
            if not self._charge(len(json.dumps(content))) and any(o.output_type == "error" for o in outs):
                return None
            return super().output(outs, msg, display_id, cell_index)
        size, used = len(json.dumps(msg["content"])), self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        if used + size > self.max_cell_output or not self._charge(size):
            if used <= self.max_cell_output < used + size:
                incidents.append(Incident("output_truncated", f"output of {self._label(cell_index)} truncated "
                                                              f"at {self.max_cell_output} bytes"))
                outs.append(new_output("stream", name="stderr",
                                       text=f"\n[output truncated: more than {self.max_cell_output} bytes]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):
        # An update rewrites every output showing that display: each copy counts.
        copies = sum(map(len, self._display_id_map.get(display_id, {}).values()))
        if copies and not self._charge(copies * len(json.dumps(msg["content"].get("data", {})))):
            return None
        return super()._update_display_id(display_id, msg)

    def handle_comm_msg(self, outs, msg, cell_index):
        if "state" in msg["content"].get("data", {}) and not self._charge(len(json.dumps(msg["content"]["data"]))):
            return None
        return super().handle_comm_msg(outs, msg, cell_index)

    def on_comm_open_jupyter_widget(self, msg):
        # nbclient reads these fields without a default; set_widgets_metadata drops the state.
        if not _complete_widget(msg["content"]["data"].get("state", {})):
            return None
        return super().on_comm_open_jupyter_widget(msg)

    def set_widgets_metadata(self) -> None:
        broken = [key for key, state in self.widget_state.items() if not _complete_widget(state)]
        for key in broken:
            del self.widget_state[key]
        if broken:
            incidents.append(Incident("widget_dropped", f"{len(broken)} widget(s) without a model module or "
                                                        "version: their state is not kept"))
        super().set_widgets_metadata()

    async def _async_handle_timeout(self, timeout, cell=None):
        if cell is not None:
            index = next(i for i, c in enumerate(self.nb.cells) if c is cell)
            incidents.append(Incident("timeout", f"{self._label(index)} ran past the time limit ({timeout} s): "
                                                 "interrupted"))
        return await super()._async_handle_timeout(timeout, cell)

    async def _check_raise_for_error(self, cell, cell_index, exec_reply):
        self._status[cell_index] = ((exec_reply or {}).get("content") or {}).get("status", "no reply")
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    # ---- guard ------------------------------------------------------------------------
    async def _async_reply(self, msg_id: str) -> dict | None:
        """The kernel's reply to ``msg_id``, or None if it died or took longer than guard_timeout."""
        deadline = time.monotonic() + self.guard_timeout
        while time.monotonic() < deadline:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
            except Empty:
                if not await ensure_async(self.kc.is_alive()):
                    return None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    def _guard_call(self, op: str) -> list[str] | None:
        """Ask the guard to ``restore`` or ``check``: its changes, or None without a signed answer."""
        nonce = secrets.token_hex(16)
        request = self.kc.session.msg(REQUEST, {"op": op, "nonce": nonce})
        self.kc.shell_channel.send(request)
        return verified(run_sync(self._async_reply)(request["header"]["msg_id"]), self._key, nonce)

    def _seal(self) -> None:
        """Seal a new kernel's socket directory before any of the student's code runs in it."""
        if self.ipc_dir and not self._sealed:
            sandbox.seal_ipc(Path(self.ipc_dir))
            self._sealed = True

    def _install_guard(self) -> None:
        """Install the guard in a kernel that has run nothing of the student's yet."""
        if not self.guard or self._key:
            return
        key = secrets.token_hex(32)
        code = (f"import course_grader.kernel.guard as _guard\n"
                f"_guard.install({self.bindings!r}, {sorted(self.instructor_names)!r}, {key!r})\ndel _guard")
        reply = run_sync(self._async_reply)(self.kc.execute(code, silent=True, store_history=False))
        if reply is not None and reply["content"].get("status") == "ok":
            self._key = key
            if self._guard_call("snapshot") is None:
                self._key = ""
        if not self._key:
            incidents.append(Incident("guard_silent", "the grading guard could not be installed"))

    def _label(self, index: int) -> str:
        grade_id = self.nb.cells[index].metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {index}" + (f" ({grade_id})" if grade_id else "")

    def _test_cell(self, cell) -> bool:
        """An autograder test: a graded code cell that is not the student's answer."""
        return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)

    def _not_credited(self, cell, index: int, kind: str, what: str) -> None:
        incidents.append(Incident(kind, f"{self._label(index)}: {what}; test not credited",
                                  cell.metadata.get("nbgrader", {}).get("grade_id", "")))
        cell.outputs.append(_error("TamperingDetected", f"{what}: this test is not credited"))

    def _settle(self, cell, index: int) -> None:
        """A test cell passes when its reply is "ok" and it printed no error; its execute
        results stay visible as displays, never as nbgrader's partial credit."""
        cell.outputs = [new_output("display_data", data=o.data, metadata=o.get("metadata", {}))
                        if o.output_type == "execute_result" else o for o in cell.outputs]
        status = self._status.get(index, "no reply")
        if status != "ok" and not any(o.output_type == "error" for o in cell.outputs):
            cell.outputs.append(_error("TestFailed", f"the test did not finish cleanly (status: {status})"))

    # ---- execution --------------------------------------------------------------------
    def execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        # A test cell holds hidden tests: kept out of the kernel's history (In, _ih, _i*), which
        # the student's code can read.
        return super().execute_cell(cell, cell_index, execution_count, store_history and not self._test_cell(cell))

    def preprocess_cell(self, cell, resources, index):
        if self._restarts > self.max_restarts:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [_error("NotRun", "not run: the kernel had to be restarted too often")]
            return cell, resources
        self._seal()
        self._install_guard()
        test = self._test_cell(cell)
        guarded = self.guard and test
        if guarded:
            restored = self._guard_call("restore") if self._key else None
            if restored is None:
                cell.outputs = []
                self._not_credited(cell, index, "guard_silent", "the grading guard did not answer (or not with "
                                                                 "its signature)")
                return cell, resources
            if restored:
                incidents.append(Incident("restored", f"before {self._label(index)}: restored {', '.join(restored[:5])}"
                                          + (f" and {len(restored) - 5} more" if len(restored) > 5 else ""),
                                          cell.metadata.nbgrader.get("grade_id", "")))
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except (CellTimeoutError, DeadKernelError) as error:
            self._recover(cell, index, error)
            return cell, resources
        if test:
            self._settle(cell, index)
        if guarded:
            replaced = self._guard_call("check")
            if replaced is None:
                self._not_credited(cell, index, "guard_silent", "the grading guard did not answer after the test")
            elif replaced:
                self._not_credited(cell, index, "tampering", f"{', '.join(replaced[:5])} replaced while the test ran")
        return cell, resources

    def _recover(self, cell, index: int, error: Exception) -> None:
        dead = isinstance(error, DeadKernelError)
        reason = ("the kernel died (crash, os._exit, memory or CPU limit)" if dead
                  else "the cell ran past the time limit and ignored the interrupt")
        incidents.append(Incident("kernel_died", f"{self._label(index)}: {reason}; kernel restarted"))
        cell.outputs.append(_error("KernelDied" if dead else "CellTimeoutError", reason))
        self._fatal.add(index)
        self._restarts += 1
        if self._restarts > self.max_restarts:
            incidents.append(Incident("gave_up", f"gave up after {self.max_restarts} kernel restarts"))
            return
        try:
            run_sync(self.km.restart_kernel)(now=True)
            run_sync(self.kc.wait_for_ready)(timeout=self.startup_timeout)
        except Exception as failure:  # noqa: BLE001 - any failure to restart ends this notebook's run
            incidents.append(Incident("gave_up", f"the kernel could not be restarted ({type(failure).__name__}: "
                                                 f"{str(failure)[:200]}): "
                                                 "the rest is not run"))
            self._restarts = self.max_restarts + 1
            return
        self._key = ""
        self._sealed = False
        self._seal()
        self._install_guard()
        for earlier, replay in enumerate(self.nb.cells[:index]):
            if replay.cell_type == "code" and replay.source.strip() and earlier not in self._fatal:
                msg_id = self.kc.execute(replay.source, silent=True, store_history=False)
                try:
                    self.wait_for_reply(msg_id, replay)
                except (CellTimeoutError, DeadKernelError):
                    incidents.append(Incident("gave_up", f"replaying {self._label(earlier)} failed after a restart"))
                    self._fatal.add(earlier)
                    self._restarts = self.max_restarts + 1
                    return
