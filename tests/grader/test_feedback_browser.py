"""Student HTML and JavaScript never run in a rendered feedback or formgrader page (issue 15).

The hostile notebook of test_sanitize.py carries every vector, each one trying, if it runs, to
push its name onto ``window.pwned`` (of the top page, or of its own frame) and to fetch
``http://127.0.0.1:9/hit/<name>``; the non-script vectors (meta refresh, CSS imports, <base>,
remote images) only fetch. The notebook is rendered as nbgrader's GenerateFeedback renders it
(HTMLExporter, template ``feedback``; see test_sanitize.render_feedback) and, for the manual
grading view, with formgrader's ``formgrade`` template. Debian's chromium (driven by Playwright)
opens each page from http://127.0.0.1:9/ (served by Playwright's router, so nothing listens and
nothing else is reachable), clicks every link that does not lead to the web, submits every form
and waits; then every frame's ``pwned`` and every request to /hit/ are collected.

The bare pages show the test can fail: there, vectors run. Without Playwright or a chromium at
$CHROMIUM (default /usr/bin/chromium) the tests skip and say so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from test_sanitize import FORMGRADER, PNG_B64, hostile_notebook, render_feedback
from traitlets.config import Config

from course_grader.worker.sanitize import SanitizeSubmission, add_csp

ORIGIN = "http://127.0.0.1:9"
PAGE = f"{ORIGIN}/feedback/student/a1/hostile.html"
# Long enough for timers, SVG animations and a refresh of 0 s to have fired.
SETTLE_MS = 1500
# The vectors the issue saw run on page load, without a click.
MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"  # nbconvert's mathjax() loader
ON_LOAD = {"script", "img_onerror", "iframe_srcdoc", "svg_onload", "details_ontoggle"}

pytestmark = pytest.mark.xdist_group("browser")


def hit(name: str) -> str:
    return f"{ORIGIN}/hit/{name}"


def payload(name: str) -> str:
    """JavaScript with no spaces or double quotes (it must also work as an unquoted attribute)."""
    return (f"try{{(top.pwned=top.pwned||[]).push('{name}')}}catch(e){{(self.pwned=self.pwned||[]).push('{name}')}};"
            f"fetch('{hit(name)}').catch(()=>0)")


# Click what needs a click (links that do not lead to the web) and submit forms, as a reader would.
INTERACT = """() => {
    const root = document.querySelector('#notebook') || document.body;
    for (const a of root.querySelectorAll('a[href]')) {
        const url = new URL(a.getAttribute('href'), location.href);
        if (!['http:', 'https:'].includes(url.protocol)) a.click();
    }
    for (const form of root.querySelectorAll('form')) {
        try { form.requestSubmit(); } catch (e) { form.submit(); }
    }
}"""
LEGIT = """() => ({
    images: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).map(i => i.naturalWidth),
    tables: document.querySelectorAll('#notebook table').length,
    text: document.body.innerText,
})"""


@dataclass
class Visit:
    ran: set[str] = field(default_factory=set)  # names pushed onto some frame's pwned
    fetched: set[str] = field(default_factory=set)  # names requested under /hit/
    outside: list[str] = field(default_factory=list)  # requests beyond 127.0.0.1 (aborted)
    legit: dict = field(default_factory=dict)

    @property
    def active(self) -> set[str]:
        return self.ran | self.fetched


def visit(browser, page_html: str) -> Visit:
    """Open ``page_html`` at :data:`PAGE`, interact, wait, and collect what ran."""
    seen = Visit()
    context = browser.new_context()

    def route(route):
        url = route.request.url
        if url == PAGE:
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=page_html)
        elif url.startswith(f"{ORIGIN}/hit/"):
            seen.fetched.add(url[len(f"{ORIGIN}/hit/"):].split("/")[0])
            route.fulfill(status=204)  # a refresh to a 204 stays on the page
        elif url.startswith(ORIGIN + "/"):
            route.fulfill(status=404, body="")  # the templates' own static files, relative URLs
        else:
            seen.outside.append(url)
            route.abort()

    context.route("**/*", route)
    try:
        page = context.new_page()
        page.goto(PAGE, wait_until="load")
        page.evaluate(INTERACT)
        page.wait_for_timeout(SETTLE_MS)
        for frame in page.frames:
            try:
                seen.ran.update(frame.evaluate("() => self.pwned || []"))
            except Exception:  # noqa: BLE001 - a frame that went away while we asked
                continue
        if page.url == PAGE:
            seen.legit = page.evaluate(LEGIT)
    finally:
        context.close()
    return seen


def notebook():
    return hostile_notebook(payload, hit, forged=False)


def render_formgrade(sanitized: bool) -> str:
    """The page formgrader serves for manual grading (its HTMLExporter is configured from
    nbgrader_config.py, so that is where the sanitizer would run): no CSP, from Jupyter's origin."""
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [str(FORMGRADER / "templates")]
    exporter = HTMLExporter(config=config)
    for preprocessor in ([SanitizeSubmission] if sanitized else []) + [CSSHTMLHeaderPreprocessor]:
        exporter.register_preprocessor(preprocessor, enabled=True)
    resources = {"assignment_id": "a1", "notebook_id": "hostile", "submission_id": "abc", "index": 0, "total": 1,
                 "base_url": "", "student": "student", "last_name": "Doe", "first_name": "Jane",
                 "notebook_path": "autograded/student/a1/hostile.ipynb"}
    body, _ = exporter.from_notebook_node(notebook(), resources)
    return body


def test_bare_feedback_runs_the_vectors(browser):
    """Without the sanitizer and the CSP (nbgrader as shipped) student code runs: the test can fail."""
    seen = visit(browser, render_feedback(notebook(), sanitized=False))
    assert ON_LOAD <= seen.ran, seen
    assert {"js_output", "markdown_output", "md_img", "md_script", "grade_id", "comment",
            "a_javascript", "form_javascript", "meta_refresh", "style_import"} <= seen.active, seen


def test_the_csp_alone_stops_every_script(browser):
    """The CSP is a defence of its own: on the bare page no script runs and nothing is fetched."""
    seen = visit(browser, add_csp(render_feedback(notebook(), sanitized=False)))
    assert seen.ran == set(), seen
    # A refresh is navigation, which no CSP delivered by <meta> can forbid: the sanitizer removes it.
    assert seen.fetched <= {"meta_refresh"}, seen


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "sanitizer-alone"])
def test_sanitized_feedback_runs_nothing(browser, csp):
    page = render_feedback(notebook(), sanitized=True)
    if not csp:
        page = page.replace(re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', page).group(0), "")
    seen = visit(browser, page)
    assert seen.active == set(), seen
    # Only the templates' own MathJax loader reaches out (aborted here), and not past the CSP.
    assert seen.outside == [] if csp else all(u.startswith(MATHJAX) for u in seen.outside), seen
    # What is legitimate is shown: both PNGs (the figure is 3 pixels wide), the tables, text, LaTeX.
    assert seen.legit["images"] == [3, 3], seen.legit
    assert seen.legit["tables"] >= 2
    text = seen.legit["text"]
    assert "plain text survives" in text and r"$$\frac{a}{b}$$" in text and r"$\alpha$" in text
    assert PNG_B64 not in text


def test_formgrader_page_runs_vectors_unless_sanitized(browser):
    """formgrader's page (the instructor's Jupyter origin, no CSP): the sanitizer alone holds."""
    assert ON_LOAD <= visit(browser, render_formgrade(sanitized=False)).ran
    seen = visit(browser, render_formgrade(sanitized=True))
    assert seen.active == set(), seen
    assert all(u.startswith(MATHJAX) for u in seen.outside), seen
