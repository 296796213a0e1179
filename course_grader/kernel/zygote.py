"""The prepared kernel process: torch and the kernel's libraries imported once per worker, each
submission's kernel forked from it into a sandbox of its own.

Most of a graded kernel's start is Python importing torch, IPython, ipykernel, matplotlib and
course_lib; nbgrader pays it again for every submission. A worker starts this process once, in
the bubblewrap sandbox (course_grader.kernel.sandbox: no network, read-only system and Python,
nothing of the grader's), as root inside it with the capabilities it needs to build a smaller
sandbox per kernel, and imports the libraries. It never runs a student's code and never sees a
hidden test: it only forks.

For each kernel the launcher (course_grader.kernel.launcher, which Jupyter starts) connects to
its socket and asks for one; then

- the forked child (the *keeper*) sends its credentials, so that the launcher can move it into
  the submission's cgroup, waits for the launcher's go, takes new mount, PID and IPC namespaces
  and forks the *init* (PID 1 there); the keeper kills the init when the launcher goes away and
  passes the kernel's exit status back to it;
- the init gives the kernel a /tmp, /dev/shm and /proc of its own (the zygote's and earlier
  submissions' are out of sight, the grader's folders too, except this kernel's socket
  directory), forks the kernel and reaps; when the kernel exits, the init exits and everything
  the kernel started dies with the PID namespace;
- the kernel sets the submission's rlimits, drops to the worker's sandbox uid (no capabilities,
  no new privileges), copies the submission's files into /tmp/work and starts ipykernel.

So every submission still gets a fresh process of its own, never a kernel another student used.

Run as ``python -m course_grader.kernel.zygote SOCKET`` (inside bwrap); prints ``ready`` once
listening.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
from pathlib import Path

from .sandbox import INSIDE_HOME, INSIDE_WORK, Limits, set_limits

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x08000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
# What a kernel imports before it runs a cell (ipykernel) and what the course's notebooks and the
# grading guard import first. Library code only. Not matplotlib's inline backend: it hooks itself
# into IPython when imported, so it must be imported in the kernel, as it is without a zygote.
# torch._dynamo (1.3 s here) is what torch.optim imports at an optimizer's first step.
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "IPython", "matplotlib.pyplot", "torch", "torch.nn",
           "torch.nn.functional", "torch.optim", "torch._dynamo", "numpy", "transformers", "course_lib",
           "course_lib.checks", "course_lib.viz", "course_grader.kernel.guard")

_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args) -> None:
    if getattr(_libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: text.encode() if text is not None else None
    _call("mount", encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


def preload() -> None:
    """Import the kernel's libraries and fill matplotlib's font cache; nothing else runs."""
    import importlib
    # What ipykernel sets before any cell when it is unset: matplotlib reads it on import.
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a course without that module: the kernel imports what it needs itself
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().set_title("warm")
    FigureCanvasAgg(figure).draw()   # fonts loaded and cached, no pyplot state


def serve(path: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # keepers are reaped by the system
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(8)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            os.close(listener.detach())     # the zygote's socket is not the child's
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _forked(keeper, 70, connection)
        connection.close()


def keeper(connection: socket.socket) -> None:
    """Between the launcher and the kernel's PID namespace: dies with the launcher's connection."""
    _call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The request, with the kernel's log opened by the launcher (the file is not the zygote's to open).
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 1)
    request = json.loads(message)
    request["log"] = fds[0]
    credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    connection.sendmsg([b"joined?\n"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)])
    if connection.recv(16).strip() != b"go":
        os._exit(71)
    _call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
    init = os.fork()
    if init == 0:
        os.close(connection.detach())
        _forked(run_init, 72, request)
    watched = os.pidfd_open(init)
    ready, _, _ = select.select([connection, watched], [], [])
    if connection in ready:        # the launcher is gone (killed by Jupyter, or the worker)
        os.kill(init, signal.SIGKILL)
    _, status = os.waitpid(init, 0)
    try:
        connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
    except OSError:
        pass
    os._exit(0)


def run_init(request: dict) -> None:
    """PID 1 of the kernel's namespaces: its own mounts, then the kernel, then reap until it exits."""
    _call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    limits, box = Limits(**request["limits"]), Path(request["box"])
    _mount(None, "/", None, MS_REC | MS_PRIVATE)    # nothing mounted here reaches the zygote
    ipc = os.open(box / "ipc", os.O_PATH | os.O_DIRECTORY)
    # O_PATH: the folder is the sandbox uid's, which the kernel reads once it is that uid.
    submission = os.open(box / "submission", os.O_PATH | os.O_DIRECTORY) if (box / "submission").is_dir() else -1
    log = request["log"]
    # Folders the sandbox shows read-only that the new /tmp or a hidden folder will cover (outermost
    # first; one inside another is shown with it): opened now, bound back read-only below.
    shown = [p for p in sorted(request["shown"], key=len) if Path(p).exists()]
    shown = {p: os.open(p, os.O_PATH) for p in shown if not any(q != p and p.startswith(q + "/") for q in shown)}
    # A fresh /tmp hides the zygote's and every grader folder under it; one outside /tmp is covered.
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits.disk_mb}m,mode=1777")
    for hidden in request["hide"]:
        if Path(hidden).is_dir():
            _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    if Path("/dev/shm").is_dir():
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={limits.disk_mb}m,mode=1777")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path, fd in shown.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    os.makedirs(box / "ipc", mode=0o755, exist_ok=True)   # the kernel's sockets: the same path as outside
    _mount(f"/proc/self/fd/{ipc}", str(box / "ipc"), None, MS_BIND)
    os.close(ipc)
    kernel = os.fork()
    if kernel == 0:
        _forked(run_kernel, 73, request, limits, submission, log)
    for fd in (submission, log):
        if fd >= 0:
            os.close(fd)
    while True:
        pid, status = os.wait()
        if pid == kernel:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def run_kernel(request: dict, limits: Limits, submission: int, log: int) -> None:
    """The submission's kernel: its limits, the sandbox uid, its files, then ipykernel."""
    null = os.open("/dev/null", os.O_RDONLY)
    for target, fd in ((0, null), (1, log), (2, log)):
        os.dup2(fd, target)
    set_limits(limits)
    uid = request["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)      # leaving uid 0 drops every permitted, effective and ambient capability
    _clear_inheritable()
    _call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # As after an exec: its own /proc/self readable by itself (a uid change had made it root's).
    _call("prctl", PR_SET_DUMPABLE, 1, 0, 0, 0)
    for folder in (INSIDE_HOME, INSIDE_WORK):
        os.makedirs(folder, exist_ok=True)
    if submission >= 0:
        os.fchdir(submission)        # its path is hidden now: copied through the open folder
        shutil.copytree(".", INSIDE_WORK, symlinks=True, dirs_exist_ok=True, copy_function=_copy_quietly)
    os.closerange(3, 1 << 16)        # the zygote's, the keeper's and the init's descriptors
    for name, value in request["env"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.chdir(INSIDE_WORK)
    sys.path[0] = INSIDE_WORK
    sys.argv = ["ipykernel_launcher", "-f", request["connection"]]
    from ipykernel.kernelapp import launch_new_instance
    launch_new_instance(argv=sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)


def _clear_inheritable() -> None:
    """Empty the inheritable capabilities too (what ``setpriv --inh-caps=-all`` does for bwrap's kernels)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)   # _LINUX_CAPABILITY_VERSION_3, this process
    _call("capset", header, (ctypes.c_uint32 * 6)())


def _forked(function, status: int, *args) -> None:
    """Run ``function`` in a forked child, which never returns into the zygote's loop: a failure
    is printed (to the zygote's stderr, or the kernel's log) and ends the child with ``status``."""
    try:
        function(*args)
    except BaseException:  # noqa: BLE001 - whatever it was, this child must end here
        import traceback
        traceback.print_exc()
    finally:
        os._exit(status)


def _copy_quietly(source: str, target: str) -> None:
    """What the sandbox's own copy does (``cp -R ... 2>/dev/null``): a file it cannot read is left out."""
    try:
        shutil.copy2(source, target)
    except OSError:
        pass


def main() -> None:
    preload()
    serve(sys.argv[1])


if __name__ == "__main__":
    main()
