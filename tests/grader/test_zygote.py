"""course_grader.kernel.zygote: kernels forked from the worker's prepared process are sandboxed
each on its own, as bwrap's kernels are, and behave as fresh kernels.

Each test starts kernels the way the worker does (its zygote, the sandbox kernel spec, the
launcher) and asks them about themselves. The adversarial suite (test_grading_batch.py) grades
every attack through the zygote too.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from course_grader.kernel import sandbox
from course_grader.worker.worker import Worker

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None or os.geteuid() != 0,
                                reason="the zygote needs bubblewrap and root (a uid to drop to)")


class _Job:   # what _zygote_socket reads of a job
    limits: dict = {}
    read_only: list = []


@pytest.fixture
def worker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    worker = Worker({"limits": {}, "read_only": []})
    socket_path = worker._zygote_socket(_Job)
    assert socket_path, "the zygote did not start"
    yield worker
    worker.close()


def start(worker: Worker, monkeypatch, **env: str) -> tuple[KernelManager, object]:
    """A kernel through the launcher, as nbgrader's Execute starts one in the worker."""
    box = worker.boxes / "box"
    sandbox.prepare_box(box, worker.slot.uid)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    policy = sandbox.Policy(str(box), worker.slot.uid, sandbox.Limits(), zygote=str(worker._zygote_dir / "socket"))
    monkeypatch.setenv(sandbox.ENV_VAR, policy.to_env())
    manager = KernelManager(kernel_name=sandbox.KERNEL_NAME, transport="ipc", ip=str(box / "ipc" / "kernel"))
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return manager, client


def ask(client, code: str) -> dict:
    """What ``code`` prints as JSON on its last line, plus the kinds of data it displayed."""
    seen = []
    reply = client.execute_interactive(code, timeout=60, output_hook=seen.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
    facts = json.loads(text.strip().splitlines()[-1])
    shown = [m["content"]["data"] for m in seen if m["msg_type"] == "display_data"]
    facts["displayed"] = sorted({kind for data in shown for kind in data})
    return facts


SELF = r"""
import json, os, sys, resource
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
def writable(folder):
    try:
        open(os.path.join(folder, "planted.py"), "w").close()
        return True
    except OSError:
        return False
def reachable(path):
    try:
        os.listdir(path)
        return True
    except OSError:
        return False
print(json.dumps({
    "uid": os.getuid(), "groups": os.getgroups(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "cap_eff": status["CapEff"].strip(), "cap_inh": status["CapInh"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm")), "cwd": os.getcwd(),
    "zygote_seen": reachable(ZYGOTE), "grading": os.environ.get("NBGRADER_EXECUTION"),
    "torch_ready": "torch" in sys.modules, "venv_writable": writable(sys.prefix),
    "course_lib_writable": writable(os.path.dirname(__import__("course_lib").__file__)),
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
}))
"""


def test_a_forked_kernel_is_confined_and_owns_nothing_of_the_zygote(worker, monkeypatch):
    manager, client = start(worker, monkeypatch, NBGRADER_EXECUTION="autograde")
    try:
        facts = ask(client, f"ZYGOTE = {str(worker._zygote_dir)!r}\n" + SELF)
    finally:
        manager.shutdown_kernel(now=True)
    assert facts["uid"] == worker.slot.uid and facts["groups"] == []
    assert facts["cap_eff"] == facts["cap_inh"] == "0000000000000000" and facts["no_new_privs"] == "1"
    assert facts["pids"][:2] == [1, 2] and max(facts["pids"]) < 100   # its own PID namespace
    assert facts["shm"] == [] and not facts["zygote_seen"] and facts["cwd"] == sandbox.INSIDE_WORK
    # The Python the sandbox shows read-only (a checkout under /tmp has its venv there), and
    # the way to its own socket directory: nothing else of the grader's.
    python = {Path(p).parts[2] for p in map(str, sandbox.python_paths()) if p.startswith("/tmp/")}
    grader_folders = [name for name in facts["tmp"] if name not in ("work", "home", *python)]
    assert len(grader_folders) <= 1
    assert facts["grading"] == "autograde"    # the launcher's environment, not the zygote's
    assert facts["torch_ready"] and facts["nproc"] == sandbox.Limits().processes
    assert not facts["venv_writable"] and not facts["course_lib_writable"]   # read-only, under /tmp or not


def test_kernels_in_a_row_share_no_files_and_no_ipc(worker, monkeypatch):
    leave = ("import ctypes, json, os\n"
        "open('/tmp/left-behind', 'w').write('x'); open('/dev/shm/left-behind', 'w').write('x')\n"
        "libc = ctypes.CDLL(None)\n"
        "print(json.dumps({'shm_id': libc.shmget(0x5eed, 4096, 0o1666)}))")
    look = ("import ctypes, json, os\nlibc = ctypes.CDLL(None)\n"
            "print(json.dumps({'tmp': os.path.exists('/tmp/left-behind'), "
            "'shm': os.path.exists('/dev/shm/left-behind'), 'sysv': libc.shmget(0x5eed, 0, 0o666)}))")
    manager, client = start(worker, monkeypatch)
    assert ask(client, leave)["shm_id"] >= 0
    manager.shutdown_kernel(now=True)
    manager, client = start(worker, monkeypatch)
    try:
        facts = ask(client, look)
    finally:
        manager.shutdown_kernel(now=True)
    assert facts["tmp"] is False and facts["shm"] is False and facts["sysv"] == -1


def test_figures_render_and_a_restart_gives_a_new_kernel(worker, monkeypatch):
    manager, client = start(worker, monkeypatch)
    try:
        shown = ask(client, "import json, os, matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n"
                            "print(json.dumps({'pid': os.getpid()}))")
        assert "image/png" in shown["displayed"]        # the inline backend hooked into this kernel
        client.execute_interactive("x = 1", timeout=30)
        manager.restart_kernel(now=True)
        client.wait_for_ready(timeout=60)
        after = ask(client, "import json\nprint(json.dumps({'x': 'x' in globals()}))")
        assert after["x"] is False
    finally:
        manager.shutdown_kernel(now=True)
