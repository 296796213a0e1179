"""The bubblewrap sandbox that every graded kernel runs in.

A submission's kernel sees a read-only system (/usr, /etc), a read-only Python and venv,
course_lib read-only, its own files copied into a private, size-limited /tmp, and nothing
else: no network, no gradebook, no solutions/, no other student, no instructor home. It runs
as an unprivileged uid of its own (one per worker) with limits on address space, CPU time,
processes, file size and open files; when its kernel is killed, everything it started dies
with it (own PID namespace, --die-with-parent). Where the host allows, a cgroup bounds the
submission's memory, processes and CPU share as a whole (course_grader.kernel.cgroup), and once
the kernel is up its socket directory is sealed (:func:`seal_ipc`): nothing of the student's
reaches the host's disk.

Jupyter starts the kernel through the kernel spec written by :func:`write_kernel_spec`,
whose argv is ``python -m course_grader.kernel.launcher {connection_file} ...``, which
then execs bwrap around ``ipykernel_launcher``. The per-job policy travels in the
``COURSE_SANDBOX`` environment variable (JSON of :class:`Policy`).
"""
from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path

KERNEL_NAME = "course-sandbox"
LAUNCHER = "course_grader.kernel.launcher"
ENV_VAR = "COURSE_SANDBOX"
# A long-lived grading worker's settings for its prepared kernel process (JSON of its jobs' limits
# and read-only paths); set by the local pool (course_grader.command.pool), which starts workers ahead.
ZYGOTE_ENV = "COURSE_ZYGOTE"
FIRST_UID = 61000  # sandbox uids: FIRST_UID + slot, not used by any account
INSIDE_WORK = "/tmp/work"
INSIDE_HOME = "/tmp/home"
INSIDE_DATA = "/opt/course-data"
SUBMISSION = "/submission"
# Environment passed into the sandbox (everything else is cleared, JPY_PARENT_PID included:
# with it the kernel exits, "Parent appears to have exited").
PASSED_ENV = ("NBGRADER_EXECUTION", "CI", "COURSE_PROFILE", "LANG")
MB = 1024 * 1024


@dataclass
class Limits:
    """What one submission may use. memory and processes bound each process (rlimits) and,
    where a cgroup can be made (course_grader.kernel.cgroup), the submission as a whole;
    disk is the private /tmp, which lives in memory (the cgroup counts it)."""
    memory_mb: int = 2048
    cpu_seconds: int = 300    # per process
    processes: int = 64       # threads count too
    cpus: float = 1.0         # share of the CPU (cgroup only): a worker per core
    file_size_mb: int = 64
    disk_mb: int = 256
    open_files: int = 256
    threads: int = 1          # OMP/MKL threads: workers already use every core


@dataclass
class Policy:
    box: str                  # per-job directory outside, readable by the sandbox uid
    uid: int | None           # None: stay the current user (not root: no uid switch possible)
    limits: Limits = field(default_factory=Limits)
    read_only: list[str] = field(default_factory=list)  # extra paths to show read-only
    cgroup: list[str] = field(default_factory=list)     # the submission's cgroup folders, [] for none
    zygote: str = ""          # the prepared kernel process's socket (course_grader.kernel.zygote); "" for none

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> "Policy":
        data = json.loads(text)
        return cls(**{**data, "limits": Limits(**data["limits"])})


def python_paths() -> list[Path]:
    """What the kernel's Python needs: its installation, the venv, and the sources of course_lib
    and of the guard (course_grader: it holds no grading data)."""
    import course_grader
    import course_lib
    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(course_lib.__path__[0]), Path(course_grader.__path__[0]),
             Path(sysconfig.get_paths()["purelib"])}
    return sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))


def hideable(paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that exist and that the sandbox can hide: not the ones holding the
    Python it runs (a home folder with the interpreter in it stays visible, read-only)."""
    shown = python_paths()
    return [p for p in paths if p.exists() and not any(p in q.parents or p == q for q in shown)]


def data_cache() -> Path:
    """Where course_lib.data keeps its assets (shown read-only inside, as COURSE_DATA)."""
    from course_lib.data import cache_dir  # the one definition of the cache folder

    return cache_dir()


def _dirs(path: Path) -> list[str]:
    """bwrap makes missing parents 0700 when run as root: create them 0755 first."""
    args = []
    for parent in reversed(path.parents[:-1]):
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def bwrap_command(policy: Policy, inner: list[str], binds: tuple[Path, ...] = (),
                  capabilities: tuple[str, ...] = ()) -> list[str]:
    """The bwrap command line that runs ``inner`` (argv) inside the sandbox, from /tmp/work.

    ``binds`` are shown read-write at their own path; with ``capabilities``, ``inner`` stays
    root and keeps only those (the zygote's, which forks kernels and drops them), else it runs
    as ``policy.uid``."""
    box = Path(policy.box)
    limits = policy.limits
    cmd = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
           *_system(), "--proc", "/proc", "--dev", "/dev",
           "--perms", "1777", "--size", str(limits.disk_mb * MB), "--tmpfs", "/tmp"]
    shown = [*python_paths(), *map(Path, policy.read_only)]
    for path in shown:
        if path.exists() and not any(p != path and p in path.parents for p in shown):
            cmd += [*_dirs(path), "--ro-bind", str(path), str(path)]
    if data_cache().is_dir():
        cmd += [*_dirs(Path(INSIDE_DATA)), "--ro-bind", str(data_cache()), INSIDE_DATA,
                "--setenv", "COURSE_DATA", INSIDE_DATA]
    if (box / "submission").is_dir():
        cmd += ["--ro-bind", str(box / "submission"), SUBMISSION]
    if (box / "ipc").is_dir():  # the kernel's sockets (IPC transport): same path inside and out
        cmd += [*_dirs(box / "ipc"), "--bind", str(box / "ipc"), str(box / "ipc")]
    for path in binds:
        cmd += [*_dirs(path), "--bind", str(path), str(path)]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": INSIDE_HOME,
           "MPLCONFIGDIR": f"{INSIDE_HOME}/.matplotlib", "IPYTHONDIR": f"{INSIDE_HOME}/.ipython",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8",
           **{name: str(limits.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
           **{name: os.environ[name] for name in PASSED_ENV if name in os.environ}}
    for name, value in env.items():
        cmd += ["--setenv", name, value]
    if capabilities:
        cmd += ["--cap-drop", "ALL", *[arg for cap in capabilities for arg in ("--cap-add", cap)]]
    elif policy.uid is not None:
        # bwrap runs as root (it may bind anything) and keeps only what setpriv needs to drop
        # to the sandbox uid: the process limit binds only a non-root real uid.
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                "setpriv", f"--reuid={policy.uid}", f"--regid={policy.uid}", "--clear-groups",
                "--inh-caps=-all", "--no-new-privs"]
    setup = (f"mkdir -p {INSIDE_HOME} {INSIDE_WORK} && "
             f"{{ [ ! -d {SUBMISSION} ] || cp -R {SUBMISSION}/. {INSIDE_WORK}/ 2>/dev/null; }}; "
             f'cd {INSIDE_WORK} && exec "$@"')
    return [*cmd, "--", "/bin/sh", "-c", setup, "sandbox", *inner]


# What the zygote needs to build each kernel's namespaces and mounts, and to drop to its uid.
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID")


def zygote_command(policy: Policy, folders: tuple[Path, ...]) -> list[str]:
    """bwrap around the zygote (course_grader.kernel.zygote) listening on ``policy.zygote``;
    ``folders`` (the boxes and the socket's folder) are shared with it read-write."""
    inner = [sys.executable, "-m", "course_grader.kernel.zygote", policy.zygote]
    return bwrap_command(policy, inner, binds=folders, capabilities=ZYGOTE_CAPABILITIES)


def set_limits(limits: Limits) -> None:
    """rlimits for this process and everything it execs (hard = soft: they cannot be raised)."""
    for name, soft, hard in [(resource.RLIMIT_AS, limits.memory_mb * MB, limits.memory_mb * MB),
                             (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 5),
                             (resource.RLIMIT_NPROC, limits.processes, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_size_mb * MB, limits.file_size_mb * MB),
                             (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
                             (resource.RLIMIT_CORE, 0, 0)]:
        resource.setrlimit(name, (soft, hard))


def prepare_box(box: Path, uid: int | None, source: Path | None = None) -> None:
    """The per-job directory: a copy of the submission's files (no notebooks: the graded copy
    holds the hidden tests) and the socket directory, owned by the sandbox uid."""
    box.mkdir(parents=True, exist_ok=True)
    (box / "ipc").mkdir(exist_ok=True)
    if source is not None:
        shutil.copytree(source, box / "submission", ignore=shutil.ignore_patterns("*.ipynb", ".*"),
                        symlinks=True, dirs_exist_ok=True)
    if uid is not None:
        for path in [box, *box.rglob("*")]:
            os.lchown(path, uid, uid)
    box.chmod(0o755)


def seal_ipc(ipc: Path) -> None:
    """Make the socket directory (the one folder the kernel shares with the host's disk) and the
    connection file the grader's and read-only, once the kernel has made its sockets: student
    code can then write nothing there. Only holds when the kernel runs as a uid of its own."""
    for path in [ipc, *ipc.iterdir()]:
        os.lchown(path, os.getuid(), os.getgid())
        if not path.is_socket():
            path.chmod(0o755 if path.is_dir() else 0o444)


def write_kernel_spec(jupyter_dir: Path) -> None:
    """Install the sandboxed kernel spec under ``jupyter_dir/kernels`` (put it on JUPYTER_PATH)."""
    spec = jupyter_dir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    # interrupt_mode message: bwrap does not pass SIGINT on, so a timeout would fail the whole
    # submission; the kernel interrupts itself on an interrupt_request instead.
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", LAUNCHER, "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)", "language": "python",
        "interrupt_mode": "message", "metadata": {"debugger": False}}, indent=1))


class UidSlot:
    """An exclusive sandbox uid for one worker process (a lock file per uid, held until close).

    Workers never share a uid, so one submission's fork bomb cannot use up another's
    process limit. Without root there is no uid to switch to: ``uid`` is None.
    """

    def __init__(self, lock_dir: Path = Path("/tmp/course-sandbox-uids"), count: int = 256):
        self.uid: int | None = None
        self._file = None
        if os.geteuid() != 0:
            return
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        for uid in range(FIRST_UID, FIRST_UID + count):
            handle = open(lock_dir / f"{uid}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.uid, self._file = uid, handle
            return
        raise RuntimeError(f"all {count} sandbox uids are in use")

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


PROBE = r"""
import json, os, resource, socket, sys
facts = {"uid": os.getuid(), "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0]}
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    facts["network"] = True
except OSError:
    facts["network"] = False
facts["visible"] = [p for p in sys.argv[1:] if os.path.exists(p)]
open("/tmp/probe", "w").write("ok")
import ipykernel, course_lib
print(json.dumps(facts))
"""


def check(policy_uid: int | None, hidden: list[Path], limits: Limits | None = None) -> str | None:
    """Why the sandbox cannot be used here, or None when it works as promised.

    Runs a probe inside the very sandbox the kernels get and checks that it works, that it
    has no network, that none of ``hidden`` (gradebook, solutions, ...) is visible and that
    it runs as an unprivileged uid with the process limit in force.
    """
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap (make test does it on Debian)"
    if policy_uid is not None and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing: it drops the kernel to an unprivileged uid"
    import tempfile
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="course-probe-") as tmp:
        box = Path(tmp) / "box"
        prepare_box(box, policy_uid)
        cmd = bwrap_command(Policy(str(box), policy_uid, limits),
                            [sys.executable, "-c", PROBE, *map(str, hidden)])
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                    preexec_fn=lambda: set_limits(limits))
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bwrap could not start: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bwrap failed here (user namespaces or mounts not permitted?): {last}"
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    if facts["network"]:
        return "the sandbox can reach the network"
    if facts["visible"]:
        return f"the sandbox can see {facts['visible']}"
    if facts["uid"] == 0:
        return "the sandboxed kernel would run as root (the process limit would not hold)"
    if facts["nproc"] != limits.processes:
        return "the process limit is not in force inside the sandbox"
    return None
