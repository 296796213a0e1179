"""Instructor tooling: nbgrader preprocessors and the ``course`` command (kept apart from the teaching code).

- ``cli``: the ``course`` command (grade, release [--bundle], feedback, export)
- ``batch``: plan a grading batch, run it on workers, merge results (the gradebook's one writer)
- ``worker``: nbgrader's autograde and feedback for one submission in a scratch course
- ``sandbox``: the bubblewrap sandbox and kernel spec every graded kernel runs in
- ``execute``: nbgrader's Execute, hardened (guard, hung or crashed kernels, output caps)
- ``guard``: runs inside the kernel; keeps student code from rigging the tests
- ``bindings``: which notebook names the guard may rebind
- ``preprocessors``: hidden tests restored without false warnings, missing or moved cells put back, feedback without hidden tests
- ``report``: the per-batch report; ``bundle``: the student distribution; ``dask_backend``: grading on a Dask cluster
"""
