"""course_grader: the instructor's grading tools (the ``course`` command); never shipped to students.

Its parts are laid out by the process each runs in. ``command`` is the ``course`` process
(``cli``): it owns the course and its gradebook (``course``: nbgrader's configuration, the
only writer of the gradebook, autograded/ and feedback/), plans one job per submission
(``batch``), hands jobs to local worker processes (``pool``) or a Dask cluster
(``dask_backend``) and writes the report (``report``). ``worker`` is one grading process:
nbgrader's autograde and feedback for one submission in a scratch course (``worker``), with
nbgrader's Execute hardened (``execute``) and preprocessors that restore what a student
changed (``preprocessors``). ``kernel`` is the graded kernel's side: the bubblewrap sandbox
and its limits (``sandbox``), the kernel spec's entry point (``launcher``), and the guard
that runs inside the student's kernel (``guard``, with ``bindings``: which notebook names it
may rebind). ``release`` builds the student distribution (``bundle``). ``protocol`` holds the
records they exchange (jobs, results, incidents, as JSON); ``markers`` nbgrader's cell
markers; ``venv`` the environment nbgrader is run with.
"""
