"""nbgrader's Execute, hardened for untrusted notebooks (used by ``course grade``).

On top of nbgrader's Execute it
- runs the grading guard (course_lib.grading.guard) around every test cell and fails a
  test cell during which trusted objects were replaced;
- survives a cell that ignores the interrupt or kills its kernel: that cell gets an error,
  the kernel is restarted, the cells before it are run again (outputs discarded) and
  grading goes on, so later cells still earn what they honestly pass;
- caps the output kept per cell, so a flood of prints cannot exhaust the grader's memory
  (error outputs are always kept: they decide the grade).

What happened is collected in :data:`incidents` (the worker turns it into the report).
"""
from __future__ import annotations

import ast
import json
import time
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Bool, Dict, Integer

GUARD = "__import__('course_lib.grading.guard', fromlist=['guard'])"
# One list per process: the worker grades one submission at a time and clears it before each.
incidents: list[str] = []


def _error(ename: str, evalue: str) -> dict:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GuardedExecute(Execute):
    guard = Bool(True, help="Run the grading guard around test cells.").tag(config=True)
    bindings = Dict(help="Notebook names the instructor's cells import, name -> 'module[:attr]' "
                         "(the guard rebinds them before each test cell).").tag(config=True)
    max_cell_output = Integer(1_000_000, help="Bytes of output kept per cell.").tag(config=True)
    max_restarts = Integer(3, help="Kernel restarts per notebook before the rest is given up.").tag(config=True)
    guard_timeout = Integer(120, help="Seconds a guard call may take (installing imports the modules the "
                                      "tests use; a slow machine must not fail tests).").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._fatal: set[int] = set()     # cells that hung or killed the kernel: never replayed
        self._restarts = 0
        self._guard_ready = False
        self._output_bytes: dict[int, int] = {}
        return super().preprocess(nb, resources, km)

    # ---- output cap -------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] != "error":
            size = len(json.dumps(msg["content"]))
            used = self._output_bytes.get(cell_index, 0)
            self._output_bytes[cell_index] = used + size
            if used + size > self.max_cell_output:
                if used <= self.max_cell_output:
                    incidents.append(f"output of {self._label(cell_index)} truncated at {self.max_cell_output} bytes")
                    outs.append(new_output("stream", name="stderr",
                                           text=f"\n[output truncated: more than {self.max_cell_output} bytes]\n"))
                return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        if cell is not None:
            index = next(i for i, c in enumerate(self.nb.cells) if c is cell)
            incidents.append(f"{self._label(index)} ran past the time limit ({timeout} s): interrupted")
        return await super()._async_handle_timeout(timeout, cell)

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

    def _guard_call(self, expression: str) -> list[str] | None:
        """Evaluate a guard call in the kernel as a user expression; None if it did not answer."""
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"g": expression})
        reply = run_sync(self._async_reply)(msg_id)
        result = (reply or {}).get("content", {}).get("user_expressions", {}).get("g", {})
        try:  # text/plain is the repr of the string the guard returned
            text = ast.literal_eval(result["data"]["text/plain"]) if result.get("status") == "ok" else ""
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(text, str) or not text.startswith("guard-ok:"):
            return None
        body = text[len("guard-ok:"):]
        return [] if body == "installed" else json.loads(body)

    def _install_guard(self) -> None:
        if self.guard and not self._guard_ready:
            self._guard_ready = self._guard_call(f"{GUARD}.install({self.bindings!r})") is not None
            if not self._guard_ready:
                incidents.append("the grading guard could not be installed")

    def _label(self, index: int) -> str:
        grade_id = self.nb.cells[index].metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {index}" + (f" ({grade_id})" if grade_id else "")

    def _grade_cell(self, cell) -> bool:
        return cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)

    # ---- execution --------------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        if self._restarts > self.max_restarts:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [_error("NotRun", "not run: the kernel had to be restarted too often")]
            return cell, resources
        self._install_guard()
        guarded = self.guard and self._grade_cell(cell)
        if guarded:
            restored = self._guard_call(f"{GUARD}.restore()") if self._guard_ready else None
            if restored is None:
                incidents.append(f"{self._label(index)}: the grading guard did not answer; test not credited")
                cell.outputs = [_error("GuardError", "the grading guard did not answer: the kernel's "
                                                      "machinery was altered, so this test is not credited")]
                return cell, resources
            if restored:
                incidents.append(f"before {self._label(index)}: restored {', '.join(restored[:5])}"
                                 + (f" and {len(restored) - 5} more" if len(restored) > 5 else ""))
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except (CellTimeoutError, DeadKernelError) as error:
            self._recover(cell, index, error)
            return cell, resources
        if guarded:
            replaced = self._guard_call(f"{GUARD}.check()")
            if replaced is None or replaced:
                what = "the grading guard did not answer" if replaced is None else \
                    f"{', '.join(replaced[:5])} replaced while the test ran"
                incidents.append(f"{self._label(index)}: {what}; test not credited")
                cell.outputs.append(_error("TamperingDetected", f"{what}: this test is not credited"))
        return cell, resources

    def _recover(self, cell, index: int, error: Exception) -> None:
        dead = isinstance(error, DeadKernelError)
        reason = ("the kernel died (crash, os._exit, memory or CPU limit)" if dead
                  else "the cell ran past the time limit and ignored the interrupt")
        incidents.append(f"{self._label(index)}: {reason}; kernel restarted")
        cell.outputs.append(_error("KernelDied" if dead else "CellTimeoutError", reason))
        self._fatal.add(index)
        self._restarts += 1
        if self._restarts > self.max_restarts:
            incidents.append(f"gave up after {self.max_restarts} kernel restarts")
            return
        try:
            run_sync(self.km.restart_kernel)(now=True)
            run_sync(self.kc.wait_for_ready)(timeout=self.startup_timeout)
        except Exception as failure:  # noqa: BLE001 - any failure to restart ends this notebook's run
            incidents.append(f"the kernel could not be restarted ({type(failure).__name__}): the rest is not run")
            self._restarts = self.max_restarts + 1
            return
        self._guard_ready = False
        self._install_guard()
        for earlier, replay in enumerate(self.nb.cells[:index]):
            if replay.cell_type == "code" and replay.source.strip() and earlier not in self._fatal:
                msg_id = self.kc.execute(replay.source, silent=True, store_history=False)
                try:
                    self.wait_for_reply(msg_id, replay)
                except (CellTimeoutError, DeadKernelError):
                    incidents.append(f"replaying {self._label(earlier)} failed after a restart")
                    self._fatal.add(earlier)
                    self._restarts = self.max_restarts + 1
                    return
