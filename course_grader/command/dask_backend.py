"""Grading beyond one machine: ``course grade --scheduler tcp://host:port``.

Each submission becomes one Dask task that grades it in a fresh worker process on a Dask
worker (``worker.grade_isolated``: the same sandboxed autograde as local grading; the task
carries everything it needs, so workers need only this package, nbgrader and bubblewrap).
Results come back to the ``course grade`` process, which stays the only writer of the
gradebook. A submission that crashes its process is reported, not retried elsewhere. Jobs are
loaded and submitted a window at a time (twice the cluster's worker threads), so the
``course`` process never holds every submission at once.
"""
from __future__ import annotations

from typing import Callable, Iterator

from ..protocol import Job, Result
from ..worker.worker import grade_isolated


def run_dask(jobs: list[Job], scheduler: str, load: Callable[[Job], Job | Result]) -> Iterator[Result]:
    """Results as the cluster finishes them (any order)."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("course grade --scheduler needs Dask: pip install 'dask[distributed]'") from error
    with Client(scheduler) as client:
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
