"""course_grader.worker.sanitize: what a submission carries is rendered inert, and what is
legitimate (images, text, tables, LaTeX) survives.

:func:`hostile_notebook` puts each vector of issue 15 (and the ways nbconvert's and nbgrader's
templates let more in: output metadata, execution counts, grade ids, comments, raw cells) into
one notebook, each calling ``payload(name)``; test_feedback_browser.py renders the same notebook
in chromium. Here the sanitized notebook, and the feedback page rendered from it as nbgrader
renders feedback, are checked for any construct that could run code or fetch anything.
"""
from __future__ import annotations

import base64
import html.parser
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import nbformat
import nbgrader
import pytest
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell
from nbgrader.preprocessors import ClearHiddenTests
from traitlets.config import Config

from course_grader import markers
from course_grader.worker import sanitize
from course_grader.worker.sanitize import FeedbackExporter, SanitizeSubmission, add_csp, sanitize_notebook

FORMGRADER = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
LEGIT_TEXT = "plain text survives"
LEGIT_LATEX = r"$$\frac{a}{b}$$"


def png(width: int = 1, height: int = 1) -> bytes:
    """A real, tiny RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG_B64 = base64.b64encode(png(3, 2)).decode()
SVG_SCRIPT = '<svg xmlns="http://www.w3.org/2000/svg" onload="{p}"><script>{p}</script></svg>'


def html_vectors(payload: Callable[[str], str], hit: Callable[[str], str]) -> dict[str, str]:
    """HTML vectors, by name: each runs ``payload(name)`` or fetches ``hit(name)`` if it works."""
    p = payload
    return {
        "script": f"<script>{p('script')}</script>",
        "img_onerror": f'<img src="x" onerror="{p("img_onerror")}">',
        "iframe_srcdoc": f'<iframe srcdoc="<script>{p("iframe_srcdoc")}</script>"></iframe>',
        "svg_onload": f'<svg onload="{p("svg_onload")}"></svg>',
        "details_ontoggle": f'<details open ontoggle="{p("details_ontoggle")}"><summary>s</summary>d</details>',
        "body_onload": f'<body onload="{p("body_onload")}">',
        "input_onfocus": f'<input autofocus onfocus="{p("input_onfocus")}">',
        "video_onerror": f'<video><source onerror="{p("video_onerror")}"></video>',
        "svg_animate": f'<svg><animate onbegin="{p("svg_animate")}" attributeName="x" dur="1s"/></svg>',
        "svg_set": f'<svg><set onbegin="{p("svg_set")}" attributeName="x" to="1"/></svg>',
        "a_javascript": f'<a href="javascript:{p("a_javascript")}">a link</a>',
        "a_javascript_obfuscated": f'<a href=" jAvA&#x09;script:{p("a_javascript_obfuscated")}">link</a>',
        "form_javascript": f'<form action="javascript:{p("form_javascript")}"><button>go</button></form>',
        "object_data": f'<object data="data:text/html,<script>{p("object_data")}</script>"></object>',
        "embed_src": f'<embed src="data:text/html,<script>{p("embed_src")}</script>">',
        "a_data_url": f'<a href="data:text/html,<script>{p("a_data_url")}</script>">data link</a>',
        "meta_refresh": f'<meta http-equiv="refresh" content="0;url={hit("meta_refresh")}">',
        "style_import": f"<style>@import url({hit('style_import')});</style>",
        "style_expression": f"<style>body {{ background: url({hit('style_expression')}); "
                            f"width: expression(alert(1)) }}</style>",
        "style_attribute": f'<div style="background-image:url({hit("style_attribute")})">bg</div>',
        "base_href": f'<base href="{hit("base_href")}/"><img src="relative.png">',
        "link_import": f'<link rel="import" href="{hit("link_import")}">'
                       f'<link rel="stylesheet" href="{hit("link_stylesheet")}">',
        "img_remote": f'<img src="{hit("img_remote")}">',
    }


def hostile_notebook(payload: Callable[[str], str], hit: Callable[[str], str],
                     forged: bool = True) -> nbformat.NotebookNode:
    """Every vector in the places a submission controls, next to legitimate content.

    ``forged`` adds what nbformat's schema refuses (a stored update_display_data, an execution
    count that is HTML): nbconvert will not render such a notebook, but a sanitizer must cope.
    """
    p = payload
    vectors = html_vectors(payload, hit)
    evil_img = '<img src="x" onerror="{}">'.format
    cells = [
        new_markdown_cell("# A submission\n\nSome **bold** text, math $x<y$ and\n\n" + LEGIT_LATEX + "\n\n"
                          "| a | b |\n|---|---|\n| 1 | 2 |\n\n![a plot](attachment:plot.png)"
                          "![svg](attachment:evil.svg)![fake](attachment:fake.png)",
                          attachments={"plot.png": {"image/png": PNG_B64},
                                       "evil.svg": {"image/svg+xml": base64.b64encode(
                                           SVG_SCRIPT.format(p=p("attachment_svg")).encode()).decode()},
                                       "fake.png": {"image/png": base64.b64encode(
                                           SVG_SCRIPT.format(p=p("attachment_fake")).encode()).decode()}}),
        new_markdown_cell(f"Raw HTML in markdown: {evil_img(p('md_img'))}\n\n<script>{p('md_script')}</script>\n\n"
                          f"[js](javascript:{p('md_link')})"),
        new_raw_cell(evil_img(p("raw_cell"))),
        new_code_cell(f"print('<b>code is escaped</b>')  # {evil_img(p('code_source'))}", outputs=[
            new_output("stream", name="stdout", text=LEGIT_TEXT + "\n" + evil_img(p("stream"))),
            new_output("execute_result", execution_count=1,
                       data={"text/plain": "<DataFrame>", "text/html": vectors["img_onerror"]
                             + '<table class="dataframe" border="1"><thead><tr style="text-align: right;">'
                               '<th>col</th></tr></thead><tbody><tr><td>42</td></tr></tbody></table>'}),
            new_output("display_data", data={"image/png": PNG_B64, "text/plain": "<Figure>"},
                       metadata={"image/png": {"width": 30, "height": 20}}),
            new_output("display_data", data={"text/latex": r"$\alpha$ </div>" + evil_img(p("latex"))}),
            new_output("error", ename="ValueError", evalue=evil_img(p("error")),
                       traceback=[f"ValueError: {evil_img(p('traceback'))}"]),
        ]),
    ]
    html_outputs = [new_output("display_data", data={"text/html": html, "text/plain": f"vector {i}"})
                    for i, (name, html) in enumerate(vectors.items()) if name != "img_onerror"]
    cells.append(new_code_cell("display(HTML(...))", execution_count=2, outputs=html_outputs + [
        new_output("display_data", data={"application/javascript":
                                         f"</script><script>{p('js_output')}</script><script>"}),
        new_output("display_data", data={"text/markdown": evil_img(p("markdown_output"))}),
        new_output("display_data", data={"image/svg+xml": SVG_SCRIPT.format(p=p("svg_output"))}),
        new_output("display_data", data={"text/html": f"<script>{p('isolated_iframe')}</script>"},
                   metadata={"text/html": {"isolated": True}}),
        new_output("display_data", data={"image/png": "AAAA"},
                   metadata={"image/png": {"width": f"1 onerror={p('png_width')}"}}),
        new_output("display_data", data={"text/vnd.mermaid": "graph TD; A-->B",
                                         "application/vnd.jupyter.widget-view+json":
                                             {"model_id": "m1", "version_major": 2, "version_minor": 0}}),
    ]))
    if forged:  # nbclient applies updates to the output they update; a forged notebook stores one
        cells[-1].outputs.append(nbformat.from_dict({
            "output_type": "update_display_data", "data": {"text/html": evil_img(p("update_display"))},
            "metadata": {}, "transient": {"display_id": "d1"}}))
    forged_cell = new_code_cell("x = 1", execution_count=3)
    if forged:
        forged_cell.execution_count = evil_img(p("execution_count"))  # templates print it raw
    forged_cell.metadata = {"tags": [f'x" onmouseover="{p("tags")}'], "transient": {"remove_source": True}}
    cells.append(forged_cell)
    answer = new_markdown_cell("A written answer.")
    # score: what nbgrader's GetGrades adds before feedback is rendered.
    answer.metadata = {"nbgrader": {"solution": True, "grade": True, "points": 1, "score": 0.0, "schema_version": 3,
                                    "grade_id": f'"><img src="x" onerror="{p("grade_id")}">',
                                    "comment": evil_img(p("comment"))}}
    cells.append(answer)
    nb = new_notebook()  # (new_notebook(cells=...) would refuse the forged parts)
    nb.cells = cells
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "title": f"</title>{evil_img(p('title'))}",
                   "widgets": {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "state": {
                       "m1": {"model_name": "HTMLModel", "model_module": "@jupyter-widgets/controls",
                              "state": {"value": evil_img(p("widget"))}}}}}}
    return nb


def marker(name: str) -> str:
    return f"PWNED_{name}"


def marker_hit(name: str) -> str:
    return f"http://127.0.0.1:9/hit/{name}"


def feedback_exporter(*preprocessors, exporter_class: type[HTMLExporter] = HTMLExporter) -> HTMLExporter:
    """An HTMLExporter set up as nbgrader's GenerateFeedback sets up its own (template
    ``feedback`` from formgrader's templates, bootstrap's CSS), with ``preprocessors`` after it."""
    config = Config()
    config.HTMLExporter.template_name = "feedback"
    config.HTMLExporter.extra_template_basedirs = [str(FORMGRADER / "templates")]
    config.HTMLExporter.extra_template_paths = [str(FORMGRADER / "static/node_modules/bootstrap/dist/css")]
    exporter = exporter_class(config=config)
    for preprocessor in preprocessors:
        exporter.register_preprocessor(preprocessor, enabled=True)
    return exporter


def feedback_resources() -> dict:
    """What nbgrader's GetGrades puts in the resources the feedback template reads."""
    return {"nbgrader": {"notebook": "hostile", "score": 0.0, "max_score": 1.0, "late_penalty": 0.0}}


def render_feedback(nb: nbformat.NotebookNode, sanitized: bool) -> str:
    """The feedback page of ``nb`` as nbgrader's feedback step writes it: with the course's
    sanitizer (where nbgrader_config.py runs it, after ClearHiddenTests) and exporter (the CSP),
    or as nbgrader ships."""
    if sanitized:
        exporter = feedback_exporter(ClearHiddenTests, SanitizeSubmission, CSSHTMLHeaderPreprocessor,
                                     exporter_class=FeedbackExporter)
    else:
        exporter = feedback_exporter(ClearHiddenTests, CSSHTMLHeaderPreprocessor)
    return exporter.from_notebook_node(nb, feedback_resources())[0]


class ActiveContent(html.parser.HTMLParser):
    """Collects whatever in an HTML fragment could run code, fetch something or navigate."""

    ELEMENTS = {"script", "iframe", "object", "embed", "frame", "frameset", "applet", "base", "link", "meta",
                "style", "svg", "math", "form", "input", "button", "textarea", "video", "audio", "source",
                "template", "portal"}
    URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "poster", "background", "xlink:href",
                      "srcset", "ping", "lowsrc", "dynsrc"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.ELEMENTS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            plain = "".join(value.split()).lower()
            if name.startswith("on") or name in ("srcdoc", "style") and "url(" in plain:
                self.found.append(f"<{tag} {name}>")
            elif name in self.URL_ATTRIBUTES and not (
                    tag == "img" and name == "src" and sanitize._data_url_image(value)
                    or tag == "a" and name == "href" and plain.startswith(("http://", "https://", "mailto:", "#"))
                    and "127.0.0.1" not in plain):
                self.found.append(f"<{tag} {name}={value[:40]}>")


class Tags(html.parser.HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


def tags(html_text: str) -> list[tuple[str, list]]:
    """(tag, attributes) of every start tag in ``html_text``."""
    parser = Tags()
    parser.feed(html_text)
    return parser.found


def active_content(html_text: str) -> list[str]:
    parser = ActiveContent()
    parser.feed(html_text)
    return parser.found


def student_part(page: str) -> str:
    """The part of a feedback page that comes from the notebook (the rest is nbgrader's template)."""
    start = page.index('<div class="container" id="notebook-container">')
    return page[start:page.rindex("</body>")]


@pytest.fixture
def hostile() -> nbformat.NotebookNode:
    return hostile_notebook(marker, marker_hit)


@pytest.fixture
def renderable() -> nbformat.NotebookNode:
    """The vectors that survive nbformat's validation (what nbgrader's feedback can be given)."""
    return hostile_notebook(marker, marker_hit, forged=False)


@pytest.fixture
def clean(hostile) -> nbformat.NotebookNode:
    return sanitize_notebook(hostile)


def all_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *all_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


# ---------------------------------------------------------------- nothing active is left

def test_the_bare_feedback_page_carries_the_vectors(renderable):
    """The check below can fail: without the sanitizer the page is full of active content."""
    found = active_content(student_part(render_feedback(renderable, sanitized=False)))
    assert len(found) > 20, found
    assert any("<script>" in f for f in found) and any("onerror" in f for f in found)


def test_no_active_content_in_the_sanitized_feedback_page(renderable):
    page = render_feedback(renderable, sanitized=True)
    assert active_content(student_part(page)) == []
    # Only nbgrader's own <script> (MathJax's loader, which the CSP blocks) is left anywhere.
    assert page.count("<script") == active_content(page).count("<script>") <= 2
    assert "PWNED" not in "".join(active_content(page))


def rendered_raw(nb: nbformat.NotebookNode) -> list[str]:
    """The strings of ``nb`` that templates put into a page as HTML, not as escaped text."""
    found = all_strings(nb.metadata)
    for cell in nb.cells:
        found += all_strings(cell.metadata)
        if cell.cell_type != "code":
            found.append(cell.source)
        for output in cell.get("outputs", []):
            found += [v for k, v in output.get("data", {}).items() if k not in ("text/plain", "text/latex")]
            found += all_strings(output.get("metadata", {}))
    return found


def test_every_vector_is_gone_from_the_notebook(clean):
    """No string that a template renders as HTML holds a handler, a script or a remote URL."""
    for text in rendered_raw(clean):
        lowered = text.lower()
        # (javascript: may be left as text, in TeX: the templates load MathJax with its Safe extension)
        assert "<script" not in lowered and "127.0.0.1" not in lowered, text
        assert "onerror" not in lowered and "onload" not in lowered and "ontoggle" not in lowered, text
        assert active_content(text) == [], text


def test_what_is_dropped(clean):
    mimes = {m for cell in clean.cells for o in cell.get("outputs", []) for m in o.get("data", {})}
    assert mimes <= {"text/plain", "text/html", "text/latex", "image/png"}
    kinds = {o.output_type for cell in clean.cells for o in cell.get("outputs", [])}
    assert kinds <= {"stream", "execute_result", "display_data", "error"}
    assert set(clean.metadata) == {"kernelspec"}  # widget state and title gone
    assert all("attachments" not in cell for cell in clean.cells)
    forged = clean.cells[5]
    assert forged.execution_count is None and "transient" not in forged.metadata
    assert forged.metadata.tags == ["x__onmouseover__PWNED_tags"]
    for cell in clean.cells:
        for output in cell.get("outputs", []):
            assert set(output.get("metadata", {})) <= {"image/png", "image/jpeg"}
    removed = [o.data["text/plain"] for o in clean.cells[4].outputs if o.output_type == "display_data"
               and list(o.data) == ["text/plain"]]
    assert any("application/javascript" in r for r in removed) and any("image/svg+xml" in r for r in removed)


def test_attachments_only_real_raster_images(clean):
    first = clean.cells[0].source
    assert f"data:image/png;base64,{PNG_B64}" in first  # the real PNG is embedded
    assert "image/svg" not in first and first.count("<img") == 3  # the SVG and the SVG posing as PNG: no src
    assert sanitize.raster_bytes("image/png", base64.b64encode(b"<svg onload=x>").decode()) is None
    assert sanitize.raster_bytes("image/svg+xml", PNG_B64) is None
    assert sanitize.raster_bytes("image/png", "not base64!") is None


def test_grade_ids_and_comments(clean):
    meta = clean.cells[-1].metadata.nbgrader
    assert meta.grade_id.startswith("invalid-") and sanitize.SAFE_ID.fullmatch(meta.grade_id)
    assert meta.solution is True and meta.points == 1 and "onerror" not in meta.comment
    valid = new_markdown_cell("x", metadata={"nbgrader": {"grade_id": "q1-answer_2.b", "grade": True}})
    assert sanitize.sanitize_cell(valid).metadata.nbgrader.grade_id == "q1-answer_2.b"  # formgrader finds it


# ---------------------------------------------------------------- what is legitimate survives

def test_legitimate_content_survives(renderable):
    page = student_part(render_feedback(renderable, sanitized=True))
    assert LEGIT_TEXT in page
    images = [dict(attrs) for tag, attrs in tags(page) if tag == "img" and dict(attrs).get("src")]
    assert [i["src"] for i in images] == [f"data:image/png;base64,{PNG_B64}"] * 2  # the attachment, the figure
    assert images[1]["width"] == "30" and images[1]["height"] == "20"
    tables = [dict(attrs) for tag, attrs in tags(page) if tag == "table"]
    assert {"class": "dataframe", "border": "1"} in tables and "<td>42</td>" in page
    assert ("tr", [("style", "text-align:right")]) in tags(page)
    assert "<th>a</th>" in page and "<td>2</td>" in page  # a markdown table
    assert LEGIT_LATEX in page and "$x&lt;y$" in page and r"$\alpha$" in page
    assert "<strong>bold</strong>" in page and "<h1>A submission</h1>" in page
    assert "&lt;b&gt;code is escaped&lt;/b&gt;" in page or "code is escaped" in page


def test_honest_outputs_are_untouched():
    honest = new_code_cell("1", execution_count=1, outputs=[
        new_output("stream", name="stdout", text="loss 0.5\n"),
        new_output("execute_result", execution_count=1, data={"text/plain": "tensor([1., 2.])"}),
        new_output("display_data", data={"image/png": PNG_B64, "text/plain": "<Figure size 640x480>"})])
    before = nbformat.from_dict(honest).copy()
    after = sanitize.sanitize_cell(honest)
    assert after.outputs == before.outputs and after.source == before.source


def test_markdown_renders_as_before():
    source = "## Heading\n\nText with *emphasis*, `code`, a [link](https://example.org) and $a_i^2$.\n"
    cell = sanitize.sanitize_cell(new_markdown_cell(source))
    exporter = feedback_exporter()
    filt = exporter.environment.filters["markdown2html"]
    rendered = filt({"cell": cell}, cell.source)
    assert "<h2>Heading</h2>" in rendered and "<em>emphasis</em>" in rendered and "<code>code</code>" in rendered
    assert 'href="https://example.org"' in rendered and "$a_i^2$" in rendered


# ---------------------------------------------------------------- hidden tests, repeated runs

def test_hidden_test_delimiters_survive_for_clear_hidden_tests():
    source = f"Question\n{markers.BEGIN_HIDDEN}\nsecret answer\n{markers.END_HIDDEN}\nafter"
    cell = new_markdown_cell(source, metadata={"nbgrader": {"grade": True, "grade_id": "q", "points": 1}})
    sanitize.sanitize_cell(cell)
    assert "secret answer" in cell.source
    nb, _ = ClearHiddenTests().preprocess(new_notebook(cells=[cell]), {})
    assert "secret answer" not in nb.cells[0].source
    assert "Question" in nb.cells[0].source and "after" in nb.cells[0].source


def test_sanitizing_twice_changes_nothing(clean):
    once = nbformat.writes(clean)
    assert nbformat.writes(sanitize_notebook(nbformat.reads(once, as_version=4))) == once


def test_sanitized_notebook_is_valid_and_file_round_trip(hostile, tmp_path):
    path = tmp_path / "hostile.ipynb"
    path.write_text(json.dumps(hostile))  # schema-invalid, as a forged notebook may be
    clean = sanitize_notebook(hostile)
    nbformat.validate(clean)
    sanitize.sanitize_notebook_file(path)
    assert nbformat.read(path, as_version=4) == clean


# ---------------------------------------------------------------- the Content-Security-Policy

def test_csp_is_the_first_element_of_the_head():
    page = '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8" />\n<script src="x"></script></head></html>'
    with_csp = add_csp(page)
    assert with_csp.index(sanitize.CSP_META) < with_csp.index("<meta charset") < with_csp.index("<script")
    assert add_csp(with_csp) == with_csp
    assert "script-src" not in sanitize.CSP and "default-src 'none'" in sanitize.CSP


def test_generate_feedback_takes_the_exporter():
    """nbgrader's GenerateFeedback builds its exporter from ``GenerateFeedback.exporter_class``."""
    from nbgrader.converters import GenerateFeedback
    config = Config()
    config.GenerateFeedback.exporter_class = FeedbackExporter
    assert GenerateFeedback(config=config).exporter_class is FeedbackExporter
    page = render_feedback(new_notebook(cells=[new_markdown_cell("hi")]), sanitized=True)
    assert page.index(sanitize.CSP_META) < page.index("<meta charset") < page.index("<script")


@pytest.mark.parametrize("template", ["nbgrader's feedback", "lab"])
def test_feedback_page_has_what_htmlexporters_accessibility_pass_adds(renderable, template):
    """FeedbackExporter skips HTMLExporter's BeautifulSoup pass (half of a page's time) and adds
    the same alt texts and tabindex itself: the page a reader and a keyboard meet is the same."""
    if template == "lab":   # nbconvert's own template, whose cells and outputs get a tabindex
        clean = sanitize_notebook(renderable)
        ours, theirs = (exporter().from_notebook_node(clean)[0] for exporter in (FeedbackExporter, HTMLExporter))
    else:
        ours = render_feedback(renderable, sanitized=True)
        exporter = feedback_exporter(ClearHiddenTests, SanitizeSubmission, CSSHTMLHeaderPreprocessor,
                                     exporter_class=HTMLExporter)
        theirs = exporter.from_notebook_node(renderable, feedback_resources())[0]
    ours_tags, their_tags = tags(ours), tags(theirs)
    for kind in ("img", "div"):
        mine = [dict(a) for t, a in ours_tags if t == kind]
        nbconverts = [dict(a) for t, a in their_tags if t == kind]
        seen = lambda attrs: [(a.get("alt"), a.get("tabindex"), (a.get("class") or "").split()) for a in attrs]
        assert seen(mine) == seen(nbconverts)   # bs4 only normalizes the spaces in class
    assert any(dict(a).get("alt", "").startswith("No description") for t, a in ours_tags if t == "img")
    if template == "lab":
        assert any(dict(a).get("tabindex") == "0" for t, a in ours_tags if t == "div")
    text = lambda page: "".join(TextOf.of(page).split())
    assert text(ours) == text(theirs)


class TextOf(html.parser.HTMLParser):
    """The text of a page, as a reader sees it."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @classmethod
    def of(cls, page: str) -> str:
        parser = cls()
        parser.feed(page)
        return "".join(parser.parts)
