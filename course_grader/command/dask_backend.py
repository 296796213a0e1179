"""Grading beyond one machine: ``course grade --scheduler tls://host:port`` (certificates: ``security``).

Each submission becomes one Dask task that grades it in a fresh worker process on a Dask
worker (``worker.grade_isolated``: the same sandboxed autograde as local grading; the task
carries everything it needs, so workers need only this package, nbgrader and bubblewrap).
Every task carries the hidden tests, so the connection is TLS with certificates (``tcp://``
only where the instructor insists). Before any task is sent, every worker checks its own
sandbox; one that fails stops the run, and a worker that joins later refuses each task.
Results come back to the ``course grade`` process, which stays the only writer of the
gradebook. A submission that crashes its process is reported, not retried elsewhere. Jobs are
loaded and submitted a window at a time (twice the cluster's worker threads), so the
``course`` process never holds every submission at once.
"""
from __future__ import annotations

import json
from typing import Callable, Iterator

from ..protocol import Job, Result
from ..worker.worker import grade_isolated, host_sandbox_problem


def run_dask(jobs: list[Job], scheduler: str, load: Callable[[Job], Job | Result],
             security=None) -> Iterator[Result]:
    """Results as the cluster finishes them (any order). ``security``: a ``distributed.Security``
    for a ``tls://`` scheduler. Raises SystemExit, before any job leaves, when a worker has no
    working sandbox for sandboxed jobs."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("course grade --scheduler needs Dask: pip install 'dask[distributed]'") from error
    with Client(scheduler, security=security) as client:
        if jobs and jobs[0].sandboxed:
            problems = {worker: why for worker, why in client.run(
                host_sandbox_problem, json.dumps(jobs[0].limits, sort_keys=True)).items() if why}
            if problems:
                raise SystemExit("course grade: refusing to grade: these Dask workers have no working sandbox, "
                                 "nothing was sent to the cluster:\n" + "\n".join(
                                     f"  {worker}: {why}" for worker, why in sorted(problems.items())))
        window = 2 * max(1, sum(client.nthreads().values()))
        pending, running = iter(jobs), as_completed()

        def fill() -> Iterator[Result]:
            """Submit jobs until the window is full; a job that cannot be loaded is its own result."""
            while running.count() < window:
                job = next(pending, None)
                if job is None:
                    return
                loaded = load(job)
                if isinstance(loaded, Result):
                    yield loaded
                else:
                    running.add(client.submit(grade_isolated, loaded.to_json(), pure=False, retries=0,
                                              key=f"grade-{job.assignment}-{job.student}"))

        yield from fill()
        for future in running:
            yield Result.from_json(future.result())
            yield from fill()
