"""The student distribution: what students download, and nothing they must not see.

It holds the released notebooks, course_lib (later notebooks import it, so a stuck
student can go on), the environment files, a student README and ``course_update.py``
(course_grader.student.update as one file: a corrected bundle taken with the answers kept). Never the grading tools
(course_grader), solutions/, the gradebook (it stores the hidden tests), submissions, grades, feedback, reports, tests or
the nbgrader configuration. :func:`leaks` checks the result before it is written.
"""
from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path

import nbformat

from ..markers import ALL as MARKERS, HIDDEN_REGION as HIDDEN, SOLUTION_REGION as SOLUTION

NAME = "transformers-course"
INCLUDED = ["notebooks", "course_lib", "pyproject.toml", "constraints.txt", "environment.yml", "LICENSE", "NOTICE"]
SKIPPED = re.compile(r"(__pycache__|\.ipynb_checkpoints|\.pyc$|\.egg-info|(^|/)\.)")

README = """\
# The Transformers course: student edition

Notebooks that build a Transformer step by step, from attention to BERT and GPT.

## Set up (once)
    python3 -m venv .venv
    .venv/bin/pip install -c constraints.txt -e '.[lab]'
(or `conda env create -f environment.yml`). A GPU is used when there is one; every notebook
also runs on a CPU, with smaller settings.

## Work
    .venv/bin/jupyter lab notebooks/
Open the notebooks in order. Each exercise states its contract (inputs, shapes, what to
return); write your code where it says `# YOUR CODE HERE` and delete the
`raise NotImplementedError()`. The cell after each exercise runs visible checks whose
messages name the likely mistake. When you submit, hidden tests decide the grade, and
your feedback explains each quiz.

## A corrected version
When a corrected bundle comes out, unpack it somewhere else and take each assignment you
started from it, your answers kept (your previous copy stays beside it as
`NAME.before-update.ipynb`):
    .venv/bin/python course_update.py 02_multi_head_attention --into notebooks \
        --from ../new/transformers-course/notebooks/02_multi_head_attention

`course_lib/` holds the course's own implementations: later notebooks import from it, so
you can go on even if an earlier exercise is not done yet.
"""


def _secret_lines(root: Path) -> tuple[set[str], set[str]]:
    """Hidden-test and solution lines that appear nowhere public (a line such as
    ``with torch.no_grad():`` is also in visible code and in course_lib, and reveals nothing)."""
    hidden, solution, public = set(), set(), set()
    for path in (root / "solutions").glob("*/*.ipynb"):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for pattern, found in ((HIDDEN, hidden), (SOLUTION, solution)):
            found |= {line.strip() for block in pattern.findall(code) for line in block.splitlines()}
        public |= {line.strip() for line in SOLUTION.sub("", HIDDEN.sub("", code)).splitlines()}
    for path in (root / "course_lib").rglob("*.py"):
        public |= {line.strip() for line in path.read_text().splitlines()}
    keep = lambda line: len(line) >= 12 and not line.startswith("#") and line not in public
    return {l for l in hidden if keep(l)}, {l for l in solution if keep(l)}


def leaks(folder: Path, root: Path) -> list[str]:
    """What in ``folder`` a student must not get: grading files and tools, markers, hidden-test
    lines anywhere, solution code in the notebooks (course_lib carries reference code by design)."""
    hidden, solution = _secret_lines(root)
    problems = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if re.search(r"(^|/)(solutions|submitted|autograded|feedback|reports|course_grader)/|gradebook|grades\.csv"
                     r"|nbgrader_config", name):
            problems.append(f"{name}: grading data")
            continue
        text = path.read_text(errors="ignore")
        problems += [f"{name}: marker {m!r}" for m in MARKERS if m in text]
        problems += [f"{name}: hidden test line {line!r}" for line in hidden if line in text][:3]
        if path.suffix == ".ipynb":
            code = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "code")
            released = {line.strip() for line in code.splitlines()}
            problems += [f"{name}: solution line {line!r}" for line in solution if line in released][:3]
    return problems


def build_bundle(root: Path, output: Path | None = None) -> Path:
    """Write ``dist/transformers-course-student.tar.gz`` (or ``output``) from the course at ``root``."""
    output = output or root / "dist" / f"{NAME}-student.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / NAME
        stage.mkdir()
        for item in INCLUDED:
            source = root / item
            paths = [source] if source.is_file() else sorted(source.rglob("*")) if source.is_dir() else []
            for path in paths:
                relative = path.relative_to(root)
                if path.is_file() and not SKIPPED.search(str(relative)):
                    (stage / relative).parent.mkdir(parents=True, exist_ok=True)
                    (stage / relative).write_bytes(path.read_bytes())
        (stage / "README.md").write_text(README)
        # The update tool is the student's, and standalone (stdlib, nbformat, nbgrader's utils).
        (stage / "course_update.py").write_text((root / "course_grader" / "student" / "update.py").read_text())
        pyproject = stage / "pyproject.toml"  # its `course` command is the instructor's: not shipped
        pyproject.write_text(re.sub(r"\[project\.scripts\]\n(.+\n)*\n?", "", pyproject.read_text()))
        problems = leaks(stage, root)
        if problems:
            raise RuntimeError("the student bundle would leak:\n  " + "\n  ".join(problems))
        output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(output, "w:gz") as tar:
            tar.add(stage, arcname=NAME)
    return output
