"""Limits on one submission as a whole: a control group (cgroup) per submission.

The rlimits of :func:`course_grader.kernel.sandbox.set_limits` bound each process alone: four
children of 1.8 GB each hold 7.2 GB, and pages a memfd or the in-memory /tmp holds are in no
process's address space. A cgroup counts every process of the submission together and every
page they are charged for (anonymous memory, page cache, tmpfs, memfd), so memory (no swap),
processes (threads included) and a CPU share are bounded for the submission as a whole.

The worker creates the group before the kernel starts (:func:`create`), the kernel's launcher
moves itself into it before it execs bwrap (:meth:`Group.join`: everything the kernel starts
inherits it) and the worker kills what is left and removes it afterwards
(:meth:`Group.destroy`); a group whose worker died first (SIGKILL) is removed by the next
:func:`create` (:func:`remove_orphans`: the worker's pid is in the group's name).

cgroup v2 is used where our own group's children may use the memory, pids and cpu
controllers (a delegated subtree), else cgroup v1's memory, pids and cpu hierarchies; both
are written directly. Where neither can be written (no root, no
delegation) :func:`create` says why, and the rlimits are all that is in force.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
CONTROLLERS = ("memory", "pids", "cpu")
PERIOD_US = 100_000  # the CPU share is enforced over this period


@dataclass
class Group:
    version: int          # 1 or 2
    paths: list[str]      # v1: one folder per hierarchy (memory, pids, cpu); v2: one folder

    def join(self, pid: int = 0) -> None:
        join(self.paths, pid)

    def _memory(self) -> Path:
        return Path(self.paths[0])  # v1: the memory hierarchy comes first

    def oom_kills(self) -> int:
        """How many of the group's processes the kernel killed for the memory limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            lines = (self._memory() / name).read_text().splitlines()
        except OSError:
            return 0
        return next((int(line.split()[1]) for line in lines if line.startswith("oom_kill ")), 0)

    def peak_mb(self) -> int | None:
        """The most memory the group held at once (None where the kernel does not say)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self._memory() / name).read_text()) // MB
        except (OSError, ValueError):
            return None

    def destroy(self) -> None:
        """Kill every process left in the group (a kernel's orphans too), then remove it."""
        for _ in range(100):
            alive = set()
            for path in self.paths:
                try:
                    alive |= {int(p) for p in (Path(path) / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not alive:
                break
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for path in self.paths:
            for _ in range(20):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY for a moment after the last process is reaped
                    time.sleep(0.05)


def join(paths: list[str], pid: int = 0) -> None:
    """Move ``pid`` (default: this process) into the group made of ``paths``; its children follow."""
    for path in paths:
        (Path(path) / "cgroup.procs").write_text(str(pid or os.getpid()))


def _write(folder: Path, name: str, value: str) -> None:
    (folder / name).write_text(value)


def _own_paths() -> dict[str, str]:
    """This process's cgroup per controller ("" is cgroup v2's), from /proc/self/cgroup."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, type, options) of every cgroup file system."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, options, *_ = line.split()
        if kind in ("cgroup", "cgroup2"):
            found.append((point, kind, options.split(",")))
    return found


def _v2(name: str, own: dict[str, str], mounts) -> tuple[Path | None, str]:
    point = next((p for p, kind, _ in mounts if kind == "cgroup2"), None)
    if point is None or "" not in own:
        return None, "no cgroup v2 hierarchy"
    parent = Path(point) / own[""].lstrip("/")
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError as error:
        return None, f"cgroup v2: {parent} cannot be read ({error.strerror})"
    missing = [c for c in CONTROLLERS if c not in enabled]
    if missing:
        return None, f"cgroup v2: {', '.join(missing)} not delegated to the children of {parent}"
    return parent / name, ""


def _v1(name: str, own: dict[str, str], mounts) -> tuple[list[Path] | None, str]:
    folders = []
    for controller in CONTROLLERS:
        point = next((p for p, kind, options in mounts if kind == "cgroup" and controller in options), None)
        if point is None or controller not in own:
            return None, f"cgroup v1: no {controller} hierarchy"
        folders.append(Path(point) / own[controller].lstrip("/") / name)
    return folders, ""


PREFIX = "course-grade-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def remove_orphans(parents: list[Path]) -> None:
    """Destroy the groups in ``parents`` whose worker (the pid in their name) is gone: a worker
    killed with SIGKILL never reaches its ``destroy``."""
    for parent in parents:
        try:
            children = list(parent.iterdir())
        except OSError:
            continue
        for folder in children:
            owner = folder.name[len(PREFIX):].split("-")[0]
            if folder.name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
                Group(1, [str(folder)]).destroy()


def create(memory_mb: int, processes: int, cpus: float) -> tuple[Group | None, str]:
    """A new group bounding memory (MB, no swap), processes (threads count) and CPUs (a share of
    ``cpus`` cores) of what joins it; or None and why no cgroup can be used here. The groups of
    workers that died without removing theirs are removed first."""
    name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        own, mounts = _own_paths(), _mounts()
    except OSError as error:
        return None, f"cgroups cannot be read ({error.strerror})"
    folder, why_v2 = _v2(name, own, mounts)
    if folder is not None:
        remove_orphans([folder.parent])
        try:
            folder.mkdir()
            group = Group(2, [str(folder)])
            _write(folder, "memory.max", str(memory_mb * MB))
            if (folder / "memory.swap.max").exists():
                _write(folder, "memory.swap.max", "0")
            _write(folder, "pids.max", str(processes))
            _write(folder, "cpu.max", f"{int(cpus * PERIOD_US)} {PERIOD_US}")
            return group, ""
        except OSError as error:
            Group(2, [str(folder)]).destroy()
            why_v2 = f"cgroup v2: {folder.parent} is not writable here ({error.strerror})"
    folders, why_v1 = _v1(name, own, mounts)
    if folders is None:
        return None, f"{why_v2}; {why_v1}"
    remove_orphans([path.parent for path in folders])
    made = []
    try:
        for path in folders:
            path.mkdir()
            made.append(str(path))
        memory, pids, cpu = folders
        _write(memory, "memory.limit_in_bytes", str(memory_mb * MB))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # swap accounting: memory + swap
            _write(memory, "memory.memsw.limit_in_bytes", str(memory_mb * MB))
        _write(pids, "pids.max", str(processes))
        _write(cpu, "cpu.cfs_period_us", str(PERIOD_US))
        _write(cpu, "cpu.cfs_quota_us", str(int(cpus * PERIOD_US)))
    except OSError as error:
        Group(1, made).destroy()
        return None, f"{why_v2}; cgroup v1: {folders[0].parent} is not writable here ({error.strerror})"
    return Group(1, made), ""
