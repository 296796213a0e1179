"""The sandboxed kernel's launcher: what Jupyter runs to start a graded kernel.

``python -m course_grader.kernel.launcher CONNECTION_FILE [ARGS...]`` (the argv of the kernel
spec that course_grader.kernel.sandbox writes) reads the job's policy from the environment,
prepares the box, joins the submission's cgroup and execs bwrap around ``ipykernel_launcher``.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .cgroup import join
from .sandbox import ENV_VAR, Policy, bwrap_command, prepare_box, set_limits


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
    os.dup2(log, 1)
    os.dup2(log, 2)
    join(policy.cgroup)  # before bwrap: the kernel and all it starts are counted together
    set_limits(policy.limits)
    inner = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection), *argv[1:]]
    cmd = bwrap_command(policy, inner)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
