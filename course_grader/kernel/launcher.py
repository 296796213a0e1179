"""The sandboxed kernel's launcher: what Jupyter runs to start a graded kernel.

``python -m course_grader.kernel.launcher CONNECTION_FILE [ARGS...]`` (the argv of the kernel
spec that course_grader.kernel.sandbox writes) reads the job's policy from the environment and
prepares the box. With a prepared kernel process (the policy names the zygote's socket) it asks
the zygote for a kernel, moves it into the submission's cgroup and stays until the kernel exits
(Jupyter's kill of this process kills the kernel); otherwise it joins the cgroup and execs bwrap
around ``ipykernel_launcher``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import sys
from dataclasses import asdict
from pathlib import Path

from .cgroup import join
from .sandbox import ENV_VAR, PASSED_ENV, Policy, bwrap_command, prepare_box, python_paths, set_limits


def from_zygote(policy: Policy, connection: Path, log: int) -> int:
    """A kernel forked by the zygote, writing to ``log``; returns its exit status once it has exited."""
    box = Path(policy.box)
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    link.connect(policy.zygote)
    hide = sorted({str(Path(policy.zygote).parent), str(box.parent)})
    # What the sandbox shows read-only and a fresh /tmp (or a hidden folder) would cover: a course
    # checked out under /tmp has its venv and course_lib there.
    covered = ["/tmp", *hide]
    shown = [p for p in map(str, [*python_paths(), *policy.read_only]) if any(p == c or p.startswith(c + "/")
                                                                               for c in covered)]
    # The variables passed into the sandbox as they are now (nbgrader sets NBGRADER_EXECUTION while it
    # grades): the zygote's own environment was fixed when it started.
    request = {"box": str(box), "connection": str(connection), "uid": policy.uid, "limits": asdict(policy.limits),
               "hide": hide, "shown": shown, "env": {name: os.environ.get(name) for name in PASSED_ENV}}
    socket.send_fds(link, [json.dumps(request).encode()], [log])
    _, ancillary, _, _ = link.recvmsg(64, socket.CMSG_SPACE(struct.calcsize("3i")))
    # The kernel's keeper, as this process's PID namespace numbers it (the kernel translates).
    keeper = next(struct.unpack("3i", data)[0] for level, kind, data in ancillary
                  if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
    join(policy.cgroup, keeper)   # before the kernel exists: it and all it starts are counted together
    link.sendall(b"go\n")
    said = link.makefile("r").readline().split()
    return int(said[1]) if len(said) == 2 and said[0] == "exit" else 1


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    policy = Policy.from_env(os.environ[ENV_VAR])
    box = Path(policy.box)
    prepare_box(box, policy.uid, source=Path.cwd())
    # The kernel reads a copy in its socket directory: Jupyter's own file is 0600, the grader's.
    connection = box / "ipc" / "connection.json"
    shutil.copy(argv[0], connection)
    if policy.uid is not None:
        os.chown(connection, policy.uid, policy.uid)
    log = os.open(box / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if policy.zygote:
        sys.exit(from_zygote(policy, connection, log))
    os.dup2(log, 1)
    os.dup2(log, 2)
    join(policy.cgroup)  # before bwrap: the kernel and all it starts are counted together
    set_limits(policy.limits)
    inner = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection), *argv[1:]]
    cmd = bwrap_command(policy, inner)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
