"""The grading sandbox itself, probed directly, and ``course grade``'s refusal without one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_grader.command import report
from course_grader.kernel import bindings, sandbox
from course_grader.protocol import Result

from adversarial.cases import ASSIGNMENT as ASSIGNMENT_01
from grading_course import course, filled, grades, make_course, submit

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap not installed (make test installs it as root on Debian)")
PROBE = r"""
import os, resource, socket, sys
def fails(action):
    try:
        action()
    except OSError:
        return True
    return False
print("uid", os.getuid())
print("net", fails(lambda: socket.create_connection(("1.1.1.1", 53), timeout=1)))
print("course", os.path.exists(sys.argv[1]))
print("venv-ro", fails(lambda: open(os.path.join(sys.prefix, "pwned"), "w")))
print("fork-limited", resource.getrlimit(resource.RLIMIT_NPROC)[0])
def fill():
    with open("/tmp/big", "wb") as f:
        for _ in range(64):
            f.write(b"0" * 2**20)
print("disk-full", fails(fill))
try:
    bytearray(2**31)
    print("alloc ok")
except MemoryError:
    print("alloc refused")
"""


@pytest.fixture(scope="module")
def slot():
    held = sandbox.UidSlot()
    yield held
    held.close()


@needs_bwrap
def test_sandbox_confines_a_process(slot, tmp_path):
    limits = sandbox.Limits(memory_mb=1024, disk_mb=16, processes=32)
    box = tmp_path / "box"
    sandbox.prepare_box(box, slot.uid)
    cmd = sandbox.bwrap_command(sandbox.Policy(str(box), slot.uid, limits),
                                [sys.executable, "-c", PROBE, str(Path(__file__).resolve().parents[2] / "solutions")])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: sandbox.set_limits(limits))
    facts = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert done.returncode == 0, done.stderr
    assert facts["net"] == "True" and facts["course"] == "False" and facts["venv-ro"] == "True"
    assert facts["disk-full"] == "True" and facts["fork-limited"] == "32" and facts["alloc"] == "refused"
    if os.geteuid() == 0:
        assert facts["uid"] == str(slot.uid)


@needs_bwrap
def test_check_accepts_the_sandbox_here(slot):
    assert sandbox.check(slot.uid, [Path(__file__).resolve()]) is None


def test_grade_refuses_without_a_sandbox_and_says_why(tmp_path):
    """Without bwrap on PATH, grading stops before running anything (exit 2)."""
    folder = make_course(tmp_path / "course", [ASSIGNMENT_01])
    submit(folder, "alice", ASSIGNMENT_01, filled(ASSIGNMENT_01))
    bin_dir = tmp_path / "bin"  # a PATH with python but without bwrap
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    done = subprocess.run([sys.executable, "-m", "course_grader.command.cli", "--course", str(folder), "grade"],
                          capture_output=True, text=True, env=dict(os.environ, PATH=str(bin_dir)), timeout=120)
    assert done.returncode == 2
    assert "refusing to grade without a working sandbox" in done.stderr and "bubblewrap" in done.stderr
    assert "--no-sandbox" in done.stderr
    assert not (folder / "autograded").exists() and not (folder / "gradebook.db").exists()


def test_guard_trusts_only_the_instructors_imports():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import torch\nimport torch.nn.functional as F\nfrom course_lib import checks\n"
                                  "from course_lib.multihead import split_heads"),
        nbformat.v4.new_code_cell("def split_heads(x, n):\n    raise NotImplementedError()",
                                  metadata={"nbgrader": {"solution": True, "grade_id": "split_heads"}}),
    ])
    assert bindings.instructor_bindings(nb) == {"torch": "torch", "F": "torch.nn.functional",
                                                "checks": "course_lib:checks"}


def test_report_reasons_name_what_happened():
    failed = Result("a", "s", error="a.ipynb is not a readable notebook")
    assert report.reasons(failed) == ["a.ipynb is not a readable notebook"]
    clean = Result("a", "s", success=True,
                   notebooks={"a": {"grades": {"t1": [2.0, 2.0, False], "t2": [0.0, 1.0, False]}}})
    row = report.make_row(clean, 2, 3)
    assert (row.status, row.reason) == ("ok", "1 of 2 test cells passed")


def test_no_sandbox_grades_but_says_so(tmp_path):
    folder = make_course(tmp_path / "course", [ASSIGNMENT_01])
    submit(folder, "alice", ASSIGNMENT_01, filled(ASSIGNMENT_01))
    done = course(folder, "grade", "--no-sandbox", "--workers", "1", "--timeout", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--no-sandbox: student code runs as you, unconfined" in done.stderr and "NOT sandboxed" in done.stdout
    assert sum(grades(folder, ASSIGNMENT_01)["alice"].values()) == 11
