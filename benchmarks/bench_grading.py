"""Sandboxed parallel grading (``course grade``) vs plain sequential ``nbgrader autograde``.

The same submissions (default: 50 of notebook 02, a mix of correct, typical wrong ones from
tests/roundtrip_cases.py and blank) are graded in two scratch courses, one after the other
in one run: plain nbgrader autograde, unsandboxed and sequential (and then its
generate_feedback + export, since ``course grade`` does those too), and ``course grade
--prepared-kernels`` with N workers, every kernel in the sandbox. Prints wall times, seconds per submission and
the ratios, CPU seconds per submission (kernels included: a load-independent figure on a
shared machine), and checks that both gave the same grades. Decides nothing; the goal (issue 20)
is at least 3x faster than plain autograde while sandboxed, on 2 cores with 2 workers (stretch 4x).

    python benchmarks/bench_grading.py [--assignment 02_multi_head_attention] [--submissions 50] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "grader"), str(ROOT / "tests" / "notebooks")]

from course_grader.kernel.sandbox import FIRST_UID  # noqa: E402
from course_grader.venv import venv_env  # noqa: E402

from grading_course import answers, filled, grades, make_course, released, submit  # noqa: E402
from roundtrip_cases import WRONG_SUBMISSIONS  # noqa: E402


def submissions(assignment: str, count: int) -> dict[str, object]:
    """student -> notebook: correct, each typical wrong one, blank, in turn."""
    solution = answers(assignment)
    kinds = [("correct", filled(assignment)), ("blank", released(assignment))]
    for i, case in enumerate(WRONG_SUBMISSIONS.get(assignment, [])):
        kinds.append((f"wrong{i}", filled(assignment, **{case.cell: solution[case.cell].replace(case.old, case.new)})))
    return {f"s{n:03d}-{kinds[n % len(kinds)][0]}": kinds[n % len(kinds)][1] for n in range(count)}


class SandboxCpu(threading.Thread):
    """CPU seconds of the sandboxed kernels (their own uids, FIRST_UID and up), sampled from /proc:
    they live in their own PID namespace, so their time never reaches our RUSAGE_CHILDREN."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: dict[int, float] = {}
        self.running = True
        self.start()

    def run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while self.running:
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    if stat.parent.stat().st_uid >= FIRST_UID:
                        fields = stat.read_text().rsplit(")", 1)[1].split()
                        self.seen[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(0.1)

    def stop(self) -> float:
        self.running = False
        self.join()
        return sum(self.seen.values())


def timed(*cmd: str, cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds of the command and everything it ran (kernels included)."""
    env = venv_env()
    env.pop("NBGRADER_EXECUTION", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = "02_multi_head_attention" if (ROOT / "solutions" / "02_multi_head_attention").is_dir() else "01_attention"
    parser.add_argument("--assignment", default=default)
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    plain, sandboxed = (make_course(work / name, [args.assignment]) for name in ("plain", "sandboxed"))
    for student, nb in submissions(args.assignment, args.submissions).items():
        for folder in (plain, sandboxed):
            submit(folder, student, args.assignment, nb)
    nbgrader = [sys.executable, "-m", "nbgrader"]
    for folder in (plain, sandboxed):  # both gradebooks hold the assignment before timing starts
        timed(*nbgrader, "generate_assignment", args.assignment, "--force",
              f"--CourseDirectory.release_directory={work / 'release'}", cwd=folder)

    autograde, autograde_cpu = timed(*nbgrader, "autograde", args.assignment, cwd=plain)
    feedback, feedback_cpu = timed(*nbgrader, "generate_feedback", args.assignment, cwd=plain)
    export, export_cpu = timed(*nbgrader, "export", cwd=plain)
    kernels = SandboxCpu()
    ours, ours_cpu = timed(sys.executable, "-m", "course_grader.command.cli", "grade", args.assignment,
                           "--workers", str(args.workers), "--prepared-kernels", cwd=sandboxed)
    kernel_cpu = kernels.stop()
    ours_cpu += kernel_cpu

    same = grades(plain, args.assignment) == grades(sandboxed, args.assignment)
    n = args.submissions
    everything, everything_cpu = autograde + feedback + export, autograde_cpu + feedback_cpu + export_cpu
    print(f"{n} submissions of {args.assignment}; {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), "
          f"load average before: {os.getloadavg()[0]:.1f}; workers={args.workers}")
    print(f"{'':52} {'wall':>8} {'per subm.':>10} {'CPU':>8} {'CPU/subm.':>10}")
    for name, wall, cpu in [("plain nbgrader autograde (sequential, no sandbox)", autograde, autograde_cpu),
                            ("plain autograde + generate_feedback + export", everything, everything_cpu),
                            (f"course grade, sandboxed, {args.workers} workers (all three)", ours, ours_cpu)]:
        print(f"{name:52} {wall:7.1f}s {wall / n:9.2f}s {cpu:7.1f}s {cpu / n:9.2f}s")
    print(f"speed-up (wall) vs plain autograde: {autograde / ours:.2f}x; vs plain autograde+feedback+export: "
          f"{everything / ours:.2f}x; CPU ours / plain autograde: {ours_cpu / autograde_cpu:.2f} "
          f"(ours: {kernel_cpu:.1f} s in sandboxed kernels, {ours_cpu - kernel_cpu:.1f} s in course grade and its "
          f"workers); same grades: {same}")


if __name__ == "__main__":
    main()
