"""Instructor tooling: nbgrader preprocessors and the ``course`` command (kept apart from the teaching code)."""
