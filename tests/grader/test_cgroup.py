"""course_grader.kernel.cgroup: one submission's processes bounded together, or a reason why not."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course_grader.command import report
from course_grader.command.course import SubmissionLimits
from course_grader.kernel import cgroup, sandbox
from course_grader.protocol import Result


@pytest.fixture
def group():
    made, why = cgroup.create(memory_mb=200, processes=16, cpus=1.0)
    if made is None:
        pytest.skip(f"no cgroup can be made here ({why}): the grader falls back to per-process limits")
    yield made
    made.destroy()


def run_in(group: cgroup.Group, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], preexec_fn=group.join, capture_output=True, text=True,
                          timeout=120)


def test_children_are_bounded_together(group):
    """Three children of 100 MB each: each under any per-process limit, together over 200 MB."""
    done = run_in(group, """import os, time
pids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            hog = bytearray(100 * 2**20)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
            time.sleep(5)
        finally:
            os._exit(0)
    pids.append(pid)
print(sorted(os.waitpid(pid, 0)[1] for pid in pids))""")
    assert done.returncode == 0, done.stderr
    assert "9" in done.stdout  # at least one child ended by SIGKILL (status 9)
    assert group.oom_kills() >= 1 and group.peak_mb() <= 200


def test_memfd_pages_count(group):
    """Memory that no address space holds (an unmapped memfd) is charged to the group."""
    done = run_in(group, """import os
fd = os.memfd_create("hoard")
for _ in range(400):
    os.write(fd, b"0" * 2**20)
print("wrote 400 MiB")""")
    assert done.returncode == -9 and "wrote" not in done.stdout
    assert group.oom_kills() == 1


def test_processes_and_threads_are_bounded(group):
    done = run_in(group, """import threading, time
started = 0
try:
    for _ in range(64):
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        started += 1
except RuntimeError:
    pass
print(started)""")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 16


def test_destroy_kills_what_is_left_and_removes_the_group():
    made, why = cgroup.create(memory_mb=200, processes=16, cpus=1.0)
    if made is None:
        pytest.skip(why)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=made.join)
    made.destroy()
    assert orphan.wait(timeout=10) == -9
    assert not any(os.path.exists(path) for path in made.paths)


def test_no_hierarchy_says_why(monkeypatch):
    monkeypatch.setattr(cgroup, "_mounts", lambda: [])
    made, why = cgroup.create(memory_mb=200, processes=16, cpus=1.0)
    assert made is None and "no cgroup v2 hierarchy" in why and "no memory hierarchy" in why


def test_report_names_the_bounds_in_force():
    limits = sandbox.Limits()
    whole = [Result("01", f"s{i}", bounds="cgroup v1") for i in range(3)]
    line = report.limits_line(limits, whole, 60, 600, SubmissionLimits())
    assert line.startswith("Limits: 2048 MB of memory, 64 processes, 1 CPU for each submission as a whole "
                           "(cgroup v1: 3)")
    fallback = [Result("01", "s", bounds="rlimits only (no cgroup v2 hierarchy; cgroup v1: no memory hierarchy)")]
    assert "per process (rlimits only" in report.limits_line(limits, fallback, None, 600, SubmissionLimits())
    assert "as a whole where a cgroup could be made" in report.limits_line(limits, whole + fallback, None, 600,
                                                                          SubmissionLimits())


def test_a_group_whose_worker_died_is_removed_by_the_next_create():
    """A worker killed with SIGKILL never removes its group: the next create() does, with what is in it."""
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    made, why = cgroup.create(memory_mb=200, processes=16, cpus=1.0)
    if made is None:
        worker.kill()
        pytest.skip(why)
    # the same group, named as the dying worker names its own
    stale = cgroup.Group(made.version, [p.replace(f"{cgroup.PREFIX}{os.getpid()}-", f"{cgroup.PREFIX}{worker.pid}-")
                                        for p in made.paths])
    made.destroy()
    for path in stale.paths:
        os.mkdir(path)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=stale.join)
    worker.kill()
    worker.wait()
    fresh, _ = cgroup.create(memory_mb=200, processes=16, cpus=1.0)
    try:
        assert orphan.wait(timeout=10) == -9
        assert not any(os.path.exists(path) for path in stale.paths)
        assert all(os.path.exists(path) for path in fresh.paths)
    finally:
        fresh.destroy()
