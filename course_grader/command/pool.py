"""Local grading: a pool of worker processes (``python -m course_grader.worker.worker``).

Each worker grades one job at a time; a worker that dies or overruns is replaced, and
its job gets a Result that says so. Results come back in the order workers finish them.
A job's submission is loaded (``load``) only when a worker is free to take it. The workers
are started ahead (:class:`LocalPool`), so that their imports and their prepared kernel
processes load while ``course grade`` is still planning the batch.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterator

from ..protocol import Job, Result

WORKER = "course_grader.worker.worker"


class WorkerProcess:
    """One worker process, restarted when it dies."""

    def __init__(self, log: Path, scratch: Path, env: dict[str, str] | None = None):
        self.log, self.scratch, self.env = log, scratch, env or {}
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def _start(self) -> None:
        self.lines = queue.Queue()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", WORKER],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         start_new_session=True,
                                         env={**os.environ, **self.env, "TMPDIR": str(self.scratch)})
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _read(stdout, lines: queue.Queue) -> None:
        """Results (one JSON line each) into ``lines``; None when the process has gone."""
        for line in stdout:
            lines.put(line)
        lines.put(None)

    def run(self, job: Job) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(job.to_json() + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=job.submission_timeout)
        except (BrokenPipeError, queue.Empty) as error:
            line = None
            reason = (f"grading took longer than {job.submission_timeout} s (--submission-timeout)"
                      if isinstance(error, queue.Empty) else "worker gone")
        else:
            reason = "the grading process died"
        if line is None:
            self.close(now=True)
            return Result(job.assignment, job.student, error=f"grading process crashed: {reason}")
        return Result.from_json(line)

    def close(self, now: bool = False) -> None:
        """End the worker: at once (its kernel dies with it: bwrap --die-with-parent), or by
        closing its input so that it cleans up after itself."""
        if self.proc is not None and self.proc.poll() is None:
            if not now:
                try:
                    self.proc.stdin.close()
                    self.proc.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class LocalPool:
    """``workers`` worker processes, started now; ``env`` is added to their environment (the
    settings their prepared kernel process is started with: course_grader.worker.worker)."""

    def __init__(self, workers: int, logs: Path, env: dict[str, str] | None = None):
        # All workers' files, in one folder: removed even if a worker is killed.
        self.scratch = Path(tempfile.mkdtemp(prefix="course-batch-"))
        self.workers = [WorkerProcess(logs / f"worker-{i}.log", self.scratch, env) for i in range(workers)]
        for worker in self.workers:
            worker._start()

    def run(self, jobs: list[Job], load: Callable[[Job], Job | Result]) -> Iterator[Result]:
        """Results as workers finish them (any order); at most one loaded submission per worker."""
        free: queue.Queue = queue.Queue()
        for worker in self.workers:
            free.put(worker)

        def run(job: Job) -> Result:
            worker = free.get()
            try:
                loaded = load(job)
                return loaded if isinstance(loaded, Result) else worker.run(loaded)
            finally:
                free.put(worker)

        with ThreadPoolExecutor(max_workers=len(self.workers)) as executor:
            for future in as_completed([executor.submit(run, job) for job in jobs]):
                yield future.result()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
