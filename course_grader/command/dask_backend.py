"""Grading beyond one machine: ``course grade --scheduler tcp://host:port``.

Each submission becomes one Dask task that grades it in a fresh worker process on a Dask
worker (``worker.grade_isolated``: the same sandboxed autograde as local grading; the task
carries everything it needs, so workers need only this package, nbgrader and bubblewrap).
Results come back to the ``course grade`` process, which stays the only writer of the
gradebook. A submission that crashes its process is reported, not retried elsewhere.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Iterator

from .worker import Job, grade_isolated


def run_dask(jobs: list[Job], scheduler: str) -> Iterator[dict]:
    """Results as the cluster finishes them (any order)."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("course grade --scheduler needs Dask: pip install 'dask[distributed]'") from error
    with Client(scheduler) as client:
        futures = [client.submit(grade_isolated, asdict(job), key=f"grade-{job.assignment}-{job.student}",
                                 pure=False, retries=0) for job in jobs]
        for future in as_completed(futures):
            yield future.result()
