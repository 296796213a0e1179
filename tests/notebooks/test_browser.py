"""The student's and the instructor's workflow in a real browser.

The course's JupyterLab is started with the command line of `make lab` (read from the Makefile
with `make -n`), on 127.0.0.1, a free port and a token, in a throwaway copy of the course
folder with its own Jupyter config, data and runtime folders, so nothing in the repository is
written. Debian's chromium, driven by Playwright, then does what a person would do:

- student: open a released notebook, Run All (it stops at the first exercise with
  NotImplementedError), type the first exercise's answer into its cell, re-run it and see its
  visible test pass, press nbgrader's Validate button and read the verdict;
- a copy of each solution notebook runs all cells with no error, the architecture figures its
  text embeds load, figures render as images and widgets as widgets; a scratch notebook shows
  that tqdm.auto progress bars render as widgets;
- instructor: nbgrader's formgrader opens from the Nbgrader menu and lists the assignments.

Screenshots of each step go to test-artifacts/browser/ (printed at the end of the run).
Without Playwright or a chromium at $CHROMIUM (default /usr/bin/chromium) the tests skip and
say so. Only loopback traffic is allowed: the browser aborts any other request and the test
fails if one was attempted.

Each notebook costs about a minute here (2 cores), so by default one assignment is driven
through each: 01 through the student's steps, 02 (an architecture figure and a view of every
head) through the solution's; BROWSER_NOTEBOOKS=all drives every one through both,
BROWSER_NOTEBOOKS=03,05 those whose names start with 03 or 05.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from course_grader import markers
from course_grader.venv import venv_env

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-viewport > .jp-Cell"
# The status bar's "Python 3 (ipykernel) | Idle" (the toolbar's indicator says idle before a kernel exists).
KERNEL_IDLE = r"""Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
    .some(e => /^(?!No Kernel).+ \| Idle$/.test(e.textContent.trim()))"""
# Timeouts (ms): generous for 2 busy cores, but bounded.
START, RUN, VALIDATE = 90_000, 240_000, 180_000

pytestmark = pytest.mark.xdist_group("browser")  # one worker, one server (also with --dist loadfile)


def _assignments(folder: str) -> list[str]:
    return sorted(p.parent.name for p in (ROOT / folder).glob("[0-9]*/*.ipynb") if p.stem == p.parent.name)


def _chosen(assignments: list[str], default: str) -> list[str]:
    wanted = os.environ.get("BROWSER_NOTEBOOKS", "")
    if wanted == "all":
        return assignments
    return [a for a in assignments if a.startswith(tuple((wanted or default).split(",")))]


SOLUTIONS = _chosen(_assignments("solutions"), default="02")
RELEASED = _chosen([a for a in _assignments("notebooks") if (ROOT / "solutions" / a).is_dir()], default="01")


# ---------------------------------------------------------------- the server, as `make lab` starts it

def lab_command(port: int) -> list[str]:
    """The `jupyter lab ...` line of `make lab`, as make would run it."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "lab", f"PORT={port}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    lines = [line for line in out.splitlines() if line.startswith("jupyter lab")]
    assert len(lines) == 1, f"expected one `jupyter lab` line in `make -n lab`:\n{out}"
    return shlex.split(lines[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab: its URL, token, the course copy it runs in and the folder it serves."""

    def __init__(self, base: Path):
        self.course = base / "course"
        self.course.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
        shutil.copy(ROOT / "nbgrader_config.py", self.course)
        for folder in ("notebooks", "solutions"):
            shutil.copytree(ROOT / folder, self.course / folder, ignore=ignore)
        jupyter = base / "jupyter"
        config = jupyter / "config"
        settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (base / "exchange").mkdir()
        # Nothing leaves the machine: no news feed, update check or PyPI extension manager.
        (config / "jupyter_server_config.py").write_text(
            "c.LabApp.news_url = None\n"
            "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
            "c.LabApp.extension_manager = 'readonly'\n")
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # The formgrader needs an exchange it can write; the course's own config stays as it is.
        (config / "nbgrader_config.py").write_text(f"c.Exchange.root = {str(base / 'exchange')!r}\n")
        env = venv_env({k: v for k, v in os.environ.items()
                        if not k.startswith(("JUPYTER", "NBGRADER_", "MPLBACKEND", "PYTEST_"))})
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(jupyter / "data"),
                   JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"), IPYTHONDIR=str(jupyter / "ipython"))
        self.token = secrets.token_hex(16)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.command = lab_command(port) + ["--ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
                                            "--ServerApp.open_browser=False"]
        self.log = base / "server.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(self.command, cwd=self.course, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.root = self._wait_until_serving()

    def _wait_until_serving(self) -> Path:
        deadline = time.monotonic() + START / 1000
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`{shlex.join(self.command)}` exited:\n{self.log.read_text()[-3000:]}")
            served = re.search(r"Serving notebooks from local directory: (.+)", self.log.read_text())
            if served and self.api("GET", "status") is not None:
                return Path(served.group(1).strip())
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"JupyterLab did not answer within {START / 1000:.0f} s:\n{self.log.read_text()[-3000:]}")

    def api(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
                return json.loads(body) if body else {}
        except OSError:
            return None

    def path(self, file: Path) -> str:
        """`file` (under the served folder) as Lab's URLs name it."""
        return file.relative_to(self.root).as_posix()

    def stop(self) -> None:
        self.api("POST", "shutdown")  # shuts the kernels down too
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS



@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture
def page(browser, lab, artifacts, record_property, request):
    """A fresh browser context on `lab`: only loopback requests pass; after a failure its last
    view is saved as FAILED-<test>.png; its kernels are shut down after."""
    record_property("screenshots", str(artifacts))
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    blocked = []

    def only_loopback(route):
        if route.request.url.startswith(lab.url + "/") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        page.screenshot(path=artifacts / ("FAILED-" + re.sub(r"\W+", "-", request.node.name).strip("-") + ".png"))
    context.close()
    for session in lab.api("GET", "sessions") or []:
        lab.api("DELETE", f"sessions/{session['id']}")
    assert not blocked, f"the page tried to reach beyond loopback: {blocked}"


# ---------------------------------------------------------------- what a person does in Lab

def shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=artifacts / f"{name}.png")


def menu(page, top: str, item: str) -> None:
    page.locator(f".lm-MenuBar-itemLabel:text-is('{top}')").click()
    page.locator(f".lm-Menu-itemLabel:text-is('{item}')").click()


def open_notebook(page, lab: Lab, file: Path, workspace: str) -> None:
    """Open `file` in a fresh workspace and wait for its cells and its kernel."""
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{lab.path(file)}?token={lab.token}")
    count = len(nbformat.read(file, as_version=4).cells)
    page.wait_for_function(f"n => document.querySelectorAll({CELLS!r}).length === n", arg=count, timeout=START)
    page.wait_for_function(f"() => {KERNEL_IDLE}", timeout=START)


def cell(page, index: int):
    return page.locator(CELLS).nth(index)


def last_count(page) -> int:
    return page.evaluate(f"""() => Math.max(0, ...Array.from(document.querySelectorAll({CELLS!r} + ' .jp-InputPrompt'),
        p => +(/\\[(\\d+)\\]/.exec(p.textContent) || [0, 0])[1]))""")


def wait_until_run(page, before: int, timeout: int = RUN) -> None:
    """Wait until a cell ran after execution count `before`, none is queued and the kernel is idle."""
    page.wait_for_function(f"""before => {{
        const prompts = Array.from(document.querySelectorAll({CELLS!r} + ' .jp-InputPrompt'), p => p.textContent);
        const counts = prompts.map(t => +(/\\[(\\d+)\\]/.exec(t) || [0, 0])[1]);
        return Math.max(0, ...counts) > before && !prompts.some(t => t.includes('*'))
            && {KERNEL_IDLE};
    }}""", arg=before, timeout=timeout)


def run_all(page, timeout: int = RUN) -> None:
    before = last_count(page)
    menu(page, "Run", "Run All Cells")
    wait_until_run(page, before, timeout)


def save(page, file: Path) -> nbformat.NotebookNode:
    """Save the notebook from Lab and read what it wrote."""
    page.locator(f"{CELLS} .jp-InputPrompt").first.click()  # command mode, on the notebook
    page.keyboard.press("Control+s")
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)", timeout=30_000)
    return nbformat.read(file, as_version=4)


def output_text(page, index: int) -> str:
    return cell(page, index).locator(".jp-OutputArea").text_content() or ""


def type_into(page, index: int, text: str) -> None:
    """Replace a code cell's text by typing it, as a person would (Lab's auto-indent included)."""
    cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    for number, line in enumerate(text.splitlines()):
        if number:
            page.keyboard.press("Enter")
            page.keyboard.press("Shift+Home")  # select what auto-indent put there; the line brings its own
        page.keyboard.type(line)
    typed = cell(page, index).locator(".cm-line").all_text_contents()
    assert [l.rstrip() for l in typed] == [l.rstrip() for l in text.splitlines()], "the editor holds other text"


def grade_id(c) -> str | None:
    return c.metadata.get("nbgrader", {}).get("grade_id")


def visible_messages(source: str) -> list[str]:
    """What a test cell prints on success: its print("...") calls outside the hidden tests."""
    visible = markers.without_hidden_tests(source)
    return re.findall(r"""print\(\s*["']([^"']+)["']\s*\)""", visible)


# ---------------------------------------------------------------- the tests

@pytest.mark.parametrize("assignment", RELEASED)
def test_student_runs_fills_and_validates(assignment, lab, page, artifacts):
    file = lab.course / "notebooks" / assignment / f"{assignment}.ipynb"
    released = nbformat.read(file, as_version=4)
    solutions = {grade_id(c): c.source for c in nbformat.read(
        ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")}
    graded = [i for i, c in enumerate(released.cells) if c.metadata.get("nbgrader", {}).get("grade")]
    # a graded exercise is an open solution cell with a graded test cell after it (the ungraded
    # practice cells at the end have none)
    todo = [i for i, c in enumerate(released.cells)
            if c.cell_type == "code" and grade_id(c) in solutions and "NotImplementedError" in c.source
            and any(g > i for g in graded)]
    assert todo, f"{assignment}: no exercise cell with `raise NotImplementedError()`"
    answer = todo[0]
    tests = [next(g for g in graded if g > a) for a in todo]
    test = tests[0]
    name = f"{assignment}-student"
    open_notebook(page, lab, file, name)
    shot(page, artifacts, f"{name}-1-opened")

    # Run All stops at the first exercise; what came before ran without error, nothing after ran.
    run_all(page)
    ran = save(page, file)
    codes = [i for i, c in enumerate(ran.cells) if c.cell_type == "code"]
    errors = [i for i in codes if any(o.output_type == "error" for o in ran.cells[i].outputs)]
    assert errors, "Run All raised no error in the released notebook"
    first = errors[0]
    error = next(o for o in ran.cells[first].outputs if o.output_type == "error")
    # the exercise's visible check reports the stub as one line that names NotImplementedError
    assert error.ename in ("NotImplementedError", "CheckFailed") and "NotImplementedError" in (
        error.ename + error.evalue), f"cell {first} raised {error.ename}: {error.evalue}"
    assert answer <= first <= test, f"Run All stopped at cell {first}, not at the first exercise (cells {answer}-{test})"
    assert all(ran.cells[i].execution_count for i in codes if i <= first), "a cell before the exercise did not run"
    assert not any(ran.cells[i].execution_count for i in codes if i > first), "cells after the error ran"
    shown = output_text(page, first)
    assert "NotImplementedError" in shown and "course_lib/" not in shown, shown
    cell(page, first).scroll_into_view_if_needed()
    shot(page, artifacts, f"{name}-2-run-all-stops-at-exercise")

    # The student types the answer into the exercise cell and runs it and its test.
    typed = markers.without_solution_markers(solutions[grade_id(released.cells[answer])])
    type_into(page, answer, typed)
    shot(page, artifacts, f"{name}-3-answer-typed")
    before = last_count(page)
    for _ in range(answer, test + 1):
        page.keyboard.press("Shift+Enter")  # runs the cell and moves to the next
    wait_until_run(page, before)
    shown = output_text(page, test)
    assert "Error" not in shown and "Traceback" not in shown, f"the visible test failed:\n{shown}"
    for message in visible_messages(released.cells[test].source):
        assert message in shown, f"the visible test did not print {message!r}:\n{shown}"
    cell(page, test).scroll_into_view_if_needed()
    shot(page, artifacts, f"{name}-4-visible-test-passes")

    # Validate: nbgrader saves, runs the notebook on the server and shows its verdict.
    page.get_by_role("button", name="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".validation-failed, .validation-success, .validation-changed, .validation-type-changed"
                   ).first.wait_for(timeout=VALIDATE)
    failed = dialog.evaluate("""d => Array.from(d.querySelectorAll('p'))
        .filter(p => p.innerText === 'The following cell failed:')
        .map(p => p.parentElement.nextElementSibling.innerText.trim())""")
    verdict = dialog.inner_text()
    shot(page, artifacts, f"{name}-5-validate")
    if len(todo) > 1:  # exercises still open: they fail, the one just answered does not
        assert dialog.locator(".validation-failed").count() == 1, f"unexpected verdict:\n{verdict[:2000]}"
        assert released.cells[tests[1]].source.strip() in failed, f"Validate passes an open exercise:\n{verdict[:2000]}"
        assert released.cells[test].source.strip() not in failed, "Validate still fails the answered exercise"
    else:
        assert "Success! Your notebook passes all the tests." in verdict, verdict[:2000]
    dialog.get_by_role("button", name="Ok").click()


@pytest.mark.parametrize("assignment", SOLUTIONS)
def test_solution_runs_and_renders(assignment, lab, page, artifacts):
    # A copy in notebooks/ (which Lab serves), as deep as solutions/NN/ so relative paths still hold.
    folder = lab.course / "notebooks" / f"{assignment}_solution_copy"
    shutil.copytree(lab.course / "solutions" / assignment, folder)
    file = folder / f"{assignment}.ipynb"
    name = f"{assignment}-solution"
    open_notebook(page, lab, file, name)
    run_all(page)
    ran = save(page, file)
    codes = [i for i, c in enumerate(ran.cells) if c.cell_type == "code"]
    errors = {i: o.ename for i in codes for o in ran.cells[i].outputs if o.output_type == "error"}
    assert not errors, f"cells raised: {errors}"
    assert all(ran.cells[i].execution_count for i in codes), "Run All did not reach every cell"
    shot(page, artifacts, f"{name}-1-ran")

    embedded = {m: i for i, c in enumerate(ran.cells) if c.cell_type == "markdown"
                for m in re.findall(r"!\[[^]]*\]\(([^)\s]+)", c.source)}
    assert set(embedded) == {p.name for p in folder.glob("*.png")}, "each figure beside the notebook is shown once"
    for n, i in enumerate(embedded.values()):  # the architecture figures, loaded by Lab from beside the notebook
        img = cell(page, i).locator(".jp-RenderedMarkdown img").first
        img.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
        shot(page, artifacts, f"{name}-2-architecture-{n + 1}")
    images = [i for i in codes if any("image/png" in o.get("data", {}) for o in ran.cells[i].outputs)]
    widgets = [i for i in codes if any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                                       for o in ran.cells[i].outputs)]
    for i in images:  # a figure shows as a loaded image, not as "<Figure size ...>"
        img = cell(page, i).locator(".jp-RenderedImage img").first
        img.scroll_into_view_if_needed()
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    for i in widgets:
        assert cell(page, i).locator(".jupyter-widgets").count(), f"cell {i}: the widget is not shown"
    for i in codes:
        text = output_text(page, i)
        assert not re.search(r"<Figure size \d+x\d+ with \d+ Axes>|IProgress not found|HBox\(children", text), \
            f"cell {i} shows a figure or widget as text:\n{text[:500]}"
    for n, i in enumerate((images + widgets)[:4]):  # the first figures: in 02 the heads of a toy model
        cell(page, i).scroll_into_view_if_needed()
        shot(page, artifacts, f"{name}-3-figure-{n + 1}")


def test_tqdm_progress_bar_is_a_widget(lab, page, artifacts):
    file = lab.root / "tqdm_scratch.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import time\n\nfrom tqdm.auto import tqdm\n\n"
        "for _ in tqdm(range(20), desc=\"training\"):\n    time.sleep(0.01)")])
    notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, file)
    open_notebook(page, lab, file, "tqdm")
    run_all(page)
    bar = cell(page, 0).locator(".jp-OutputArea .jupyter-widgets.widget-hprogress")
    bar.wait_for()
    shown = output_text(page, 0)
    assert "training" in shown and "20/20" in shown, shown
    assert "HBox" not in shown and "IProgress" not in shown and "█" not in shown, shown
    shot(page, artifacts, "tqdm-progress-widget")


def open_formgrader(page, lab: Lab):
    page.goto(f"{lab.url}/lab/workspaces/formgrader?token={lab.token}")
    menu(page, "Nbgrader", "Formgrader")
    frame = page.frame_locator("iframe[src$='/formgrader']")
    frame.locator("#main-table td.name").first.wait_for(timeout=START)
    return frame


def test_formgrader_lists_the_assignments(lab, page, artifacts):
    frame = open_formgrader(page, lab)
    listed = frame.locator("#main-table td.name").all_inner_texts()
    shot(page, artifacts, "formgrader-assignments")
    expected = sorted(p.name for p in (lab.course / "solutions").iterdir() if p.is_dir() and p.name[:2].isdigit())
    assert sorted(listed) == expected


def test_formgrader_opens_an_assignment_source(lab, page, artifacts):
    frame = open_formgrader(page, lab)
    first = frame.locator("#main-table td.name a").first
    assignment = first.inner_text()
    with page.expect_response(lambda r: f"solutions/{assignment}" in r.url) as response:
        first.click()
    if response.value.ok:
        page.locator(".jp-BreadCrumbs", has_text=assignment).wait_for()
    shot(page, artifacts, "formgrader-open-source")
    assert response.value.ok, f"Lab could not open solutions/{assignment}: {response.value.status} {response.value.url}"
