"""Make what a submission carries safe to render in the instructor's and students' browsers.

A student controls every output (any mime type), every markdown and raw cell, attachments and
most cell metadata of a submitted notebook; nbgrader's feedback page and formgrader render them
with nbconvert's HTMLExporter, which passes HTML, markdown's raw HTML and JavaScript through.
:class:`SanitizeSubmission` rewrites the notebook so that only inert content is left, by allow
list (nh3, the binding of the Rust sanitizer ammonia): plain text, PNG and JPEG outputs and PNG,
JPEG or GIF images in HTML (each checked by its magic bytes), LaTeX as text, and HTML reduced to
formatting, tables, links and images.
:func:`add_csp` (through :class:`FeedbackExporter`) adds a Content-Security-Policy that forbids
every script to a feedback page, a second line of defence should anything active get through.
"""
from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import nbformat
import nh3
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from pygments.token import STANDARD_TYPES
from traitlets import Bool

from .. import markers

# Raster images a browser never runs code from, by the bytes they start with.
RASTER_MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",),
                "image/gif": (b"GIF87a", b"GIF89a")}
# Output mime types kept (HTMLExporter renders text and LaTeX escaped; HTML is cleaned here;
# text/markdown becomes cleaned text/html). Everything else (JavaScript, SVG, widgets,
# mermaid, JSON and vendor types) may carry code or is not rendered: dropped.
TEXT_TYPES = ("text/plain", "text/latex")
HTML_TYPE, MARKDOWN_TYPE = "text/html", "text/markdown"
OUTPUT_IMAGES = ("image/png", "image/jpeg")  # the raster outputs HTMLExporter shows

# The wrapper of a markdown cell's cleaned HTML (see _wrap).
WRAPPER_CLASS = "sanitized-markdown"
# nbgrader's ClearHiddenTests finds these words anywhere in a line.
HIDDEN_DELIMITERS = {"BEGIN HIDDEN TESTS": markers.BEGIN_HIDDEN, "END HIDDEN TESTS": markers.END_HIDDEN}

TAGS = {"a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
        "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span",
        "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt",
        "u", "ul", "var", "wbr"}
# Removed with their content (their text is code or fallback, not something to show).
DROPPED_WITH_CONTENT = {"script", "style", "svg", "math", "template", "iframe", "object", "embed", "noscript",
                        "textarea", "select", "title", "noembed", "noframes", "xmp"}
CELL_ATTRIBUTES = {"align", "valign", "colspan", "rowspan", "scope", "headers"}
ATTRIBUTES = {"*": {"style", "title", "lang", "dir"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
              "table": {"border", "cellpadding", "cellspacing"}, "td": CELL_ATTRIBUTES, "th": CELL_ATTRIBUTES,
              "col": {"span", "width"}, "colgroup": {"span", "width"}, "ol": {"start", "type"},
              "blockquote": {"cite"}, "q": {"cite"}, "tr": {"align", "valign"}}
# No position, display, size or url()-taking properties: student HTML cannot cover or mimic
# the grader's page, nor fetch anything.
STYLE_PROPERTIES = {"color", "background-color", "text-align", "vertical-align", "font-weight", "font-style",
                    "text-decoration", "white-space", "border", "border-collapse", "border-spacing", "padding",
                    "padding-left", "padding-right", "padding-top", "padding-bottom"}
# Classes that only colour code (pygments) or style tables (pandas); no id, so no DOM clobbering.
CLASSES = {"span": {c for c in STANDARD_TYPES.values() if c}, "div": {"highlight", WRAPPER_CLASS},
           "table": {"dataframe"}}
LINK_PREFIXES = ("http://", "https://", "mailto:", "#")
SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")
SAFE_TAG = re.compile(r"[^A-Za-z0-9_.:-]")
MIME = re.compile(r"[a-z]+/[a-z0-9.+-]+")
NBGRADER_FLAGS = ("grade", "solution", "locked", "task")


def raster_bytes(mime: str, data: str) -> bytes | None:
    """The image ``data`` (base64) decodes to, if it is a real ``mime`` raster image; else None."""
    if mime not in RASTER_MAGIC or not isinstance(data, str):
        return None
    try:
        raw = base64.b64decode(re.sub(r"\s", "", data), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if raw.startswith(RASTER_MAGIC[mime]) else None


def _data_url_image(url: str) -> bool:
    match = re.fullmatch(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=\s]*)", url.strip())
    return bool(match) and raster_bytes(match.group(1), match.group(2)) is not None


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    """Keep a URL only where it cannot run or fetch anything: images from data: URLs of real
    raster images, links to the web, mail or the same page (never data:, javascript: or paths)."""
    if attribute == "src":
        return value if _data_url_image(value) else None
    if attribute == "href":
        # A browser ignores ASCII whitespace and controls in a URL's scheme.
        plain = re.sub(r"[\x00-\x20]", "", value).lower()
        return value if plain.startswith(LINK_PREFIXES) else None
    if attribute in ("width", "height"):
        return value if re.fullmatch(r"\d{1,5}%?", value.strip()) else None
    return value


CLEANER = nh3.Cleaner(tags=TAGS, clean_content_tags=DROPPED_WITH_CONTENT, attributes=ATTRIBUTES,
                      attribute_filter=_attribute_filter, url_schemes={"http", "https", "mailto", "data"},
                      filter_style_properties=STYLE_PROPERTIES, allowed_classes=CLASSES,
                      link_rel="noopener noreferrer nofollow", strip_comments=True)


def clean_html(html: str) -> str:
    """``html`` reduced to the allow-listed tags, attributes, classes, styles and URLs."""
    return CLEANER.clean(html)


class _Renderer(IPythonRenderer):
    """nbconvert's markdown renderer that embeds only real raster attachments (and never fails
    on a missing one, which would stop feedback for the whole submission)."""

    def _embed_image_or_attachment(self, src: str) -> str:
        if not src.startswith("attachment:"):
            return src
        for mime, data in self.attachments.get(src[len("attachment:"):], {}).items():
            if (image := raster_bytes(mime, data)) is not None:
                return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
        return ""


def markdown_html(source: str, attachments: dict | None = None) -> str:
    """Markdown rendered as nbconvert's templates render it, then cleaned."""
    renderer = _Renderer(escape=False, attachments=attachments or {}, exclude_anchor_links=True)
    return clean_html(MarkdownWithMath(renderer=renderer).render(source))


def _wrap(html: str) -> str:
    """Cleaned HTML as one line that starts with <div: markdown passes it through as it is
    (an HTML block ends at a blank line). Already wrapped HTML (a second run) is not wrapped again."""
    html = html.strip()
    if not re.fullmatch(rf'<div class="{WRAPPER_CLASS}">.*</div>', html, re.S):
        html = f'<div class="{WRAPPER_CLASS}">{html}</div>'
    return re.sub(r"\r\n|\r|\n", "&#10;", html)


def sanitize_markdown(source: str, attachments: dict | None = None) -> str:
    """A markdown cell's source as cleaned HTML the templates render unchanged.

    Lines with nbgrader's hidden-test delimiters stay lines of their own (in their canonical
    form), so ClearHiddenTests still removes the region between them in a later feedback run.
    """
    parts, segment = [], []
    for line in source.splitlines():
        delimiter = next((d for word, d in HIDDEN_DELIMITERS.items() if word in line), None)
        if delimiter is None:
            segment.append(line)
            continue
        parts.append("\n".join(segment))
        parts.append(delimiter)
        segment = []
    parts.append("\n".join(segment))
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(part)
        elif part.strip():
            out.append(_wrap(markdown_html(part, attachments)))
    return "\n\n".join(out)


def _text(value) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value if isinstance(value, str) else None


def _image_size(metadata) -> dict:
    size = metadata if isinstance(metadata, dict) else {}
    return {k: size[k] for k in ("width", "height") if type(size.get(k)) is int and size[k] > 0}


def sanitize_output(output: dict) -> NotebookNode | None:
    """An output rebuilt from its inert parts; None for kinds that are never rendered."""
    kind = output.get("output_type")
    if kind == "stream":
        return nbformat.v4.new_output("stream", name="stderr" if output.get("name") == "stderr" else "stdout",
                                      text=_text(output.get("text")) or "")
    if kind == "error":
        traceback = output.get("traceback")
        return nbformat.v4.new_output(
            "error", ename=_text(output.get("ename")) or "", evalue=_text(output.get("evalue")) or "",
            traceback=[t for t in traceback if isinstance(t, str)] if isinstance(traceback, list) else [])
    # update_display_data is a message, not an output a notebook stores (nbclient applies it to
    # the display_data it updates): like templates, drop it with every unknown kind.
    if kind not in ("display_data", "execute_result"):
        return None
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    metadata = output.get("metadata") if isinstance(output.get("metadata"), dict) else {}
    clean, sizes, dropped = {}, {}, []
    for mime, value in data.items():
        text = _text(value)
        if mime in TEXT_TYPES and text is not None:
            clean[mime] = text
        elif mime == HTML_TYPE and text is not None:
            clean[HTML_TYPE] = clean_html(text)
        elif mime == MARKDOWN_TYPE and text is not None:
            clean.setdefault(HTML_TYPE, markdown_html(text))
        elif mime in OUTPUT_IMAGES and (image := raster_bytes(mime, text)) is not None:
            # Encoded again, so nothing but the image rides along.
            clean[mime] = base64.b64encode(image).decode("ascii")
            if size := _image_size(metadata.get(mime)):
                sizes[mime] = size
        else:
            dropped.append(mime)
    if not clean:
        clean["text/plain"] = f"[output removed by the grader: {', '.join(dropped) or 'no data'}]"
    if kind == "execute_result":
        count = output.get("execution_count")
        return nbformat.v4.new_output("execute_result", data=clean, metadata=sizes,
                                      execution_count=count if type(count) is int else None)
    return nbformat.v4.new_output("display_data", data=clean, metadata=sizes)


def sanitize_nbgrader(meta) -> dict | None:
    """nbgrader's cell metadata with only its own keys, of their own types (templates print
    ``grade_id`` raw into HTML attributes)."""
    if not isinstance(meta, dict):
        return None
    clean = {flag: meta[flag] for flag in NBGRADER_FLAGS if isinstance(meta.get(flag), bool)}
    grade_id = meta.get("grade_id")
    if isinstance(grade_id, str):
        # nbgrader itself never writes another id; a forged one is shown as something inert.
        clean["grade_id"] = grade_id if SAFE_ID.fullmatch(grade_id) else "invalid-" + grade_id.encode().hex()[:32]
    for number in ("points", "score"):
        if type(meta.get(number)) in (int, float):
            clean[number] = meta[number]
    if type(meta.get("schema_version")) is int:
        clean["schema_version"] = meta["schema_version"]
    if meta.get("cell_type") in ("code", "markdown"):
        clean["cell_type"] = meta["cell_type"]
    if isinstance(meta.get("checksum"), str) and re.fullmatch(r"[0-9a-f]*", meta["checksum"]):
        clean["checksum"] = meta["checksum"]
    if isinstance(meta.get("comment"), str):
        clean["comment"] = sanitize_markdown(meta["comment"])
    return clean


def sanitize_cell_metadata(metadata) -> dict:
    """Cell metadata reduced to what grading and rendering need (nbgrader's, tags, lock flags,
    a raw cell's mime type). Gone among others: ``transient`` (it hides a cell's source from
    the page) and any other key a template might print."""
    metadata = metadata if isinstance(metadata, dict) else {}
    clean = {}
    if (nbgrader := sanitize_nbgrader(metadata.get("nbgrader"))) is not None:
        clean["nbgrader"] = nbgrader
    tags = metadata.get("tags")
    if isinstance(tags, list):
        clean["tags"] = [SAFE_TAG.sub("_", t) for t in tags if isinstance(t, str)]
    if isinstance(metadata.get("raw_mimetype"), str) and MIME.fullmatch(metadata["raw_mimetype"]):
        clean["raw_mimetype"] = metadata["raw_mimetype"]
    for flag in ("editable", "deletable"):
        if isinstance(metadata.get(flag), bool):
            clean[flag] = metadata[flag]
    return clean


def sanitize_notebook_metadata(metadata) -> dict:
    """Notebook metadata without widget state, title or anything but the kernel's description
    (whose values become plain strings)."""
    metadata = metadata if isinstance(metadata, dict) else {}
    clean = {}
    for key in ("kernelspec", "language_info"):
        value = metadata.get(key)
        if isinstance(value, dict):
            clean[key] = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, (str, int))}
    return clean


def sanitize_cell(cell: NotebookNode) -> NotebookNode:
    """One cell, sanitized in place (and returned)."""
    cell.metadata = nbformat.from_dict(sanitize_cell_metadata(cell.get("metadata")))
    source = _text(cell.get("source")) or ""
    if cell.cell_type == "markdown":
        cell.source = sanitize_markdown(source, cell.get("attachments"))
        cell.pop("attachments", None)  # embedded above when they are real raster images
    elif cell.cell_type == "raw":
        # HTMLExporter renders a raw cell as HTML when its raw_mimetype is text/html or none.
        cell.source = clean_html(source)
        cell.pop("attachments", None)
    elif cell.cell_type == "code":
        cell.source = source  # highlighted and escaped by the templates
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        cell.outputs = [o for o in (sanitize_output(o) for o in outputs if isinstance(o, dict)) if o is not None]
        if type(cell.get("execution_count")) is not int:
            cell.execution_count = None
    return cell


def sanitize_notebook(nb: NotebookNode) -> NotebookNode:
    """The whole notebook, sanitized in place (and returned); cells of unknown types are dropped."""
    nb.metadata = nbformat.from_dict(sanitize_notebook_metadata(nb.get("metadata")))
    nb.cells = [sanitize_cell(c) for c in nb.cells if c.get("cell_type") in ("markdown", "raw", "code")]
    return nb


class SanitizeSubmission(Preprocessor):
    """nbconvert/nbgrader preprocessor: :func:`sanitize_notebook` before a notebook is rendered."""

    enabled = Bool(True).tag(config=True)  # nbgrader registers its preprocessors without enabling them

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        return sanitize_notebook(nb), resources


def sanitize_notebook_file(path: Path) -> None:
    """Sanitize a notebook file in place (an autograded notebook, before formgrader shows it)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.write(sanitize_notebook(nb), path)


# No script-src: default-src 'none' forbids every script, inline handlers and javascript: URLs
# included. Images and fonts only from data: URLs, inline styles (the templates inline their
# CSS); no frames, fetches, forms or <base>. MathJax cannot load: LaTeX shows as its source.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
       "base-uri 'none'; form-action 'none'")
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'


def add_csp(html: str) -> str:
    """A rendered page with :data:`CSP_META` as the first element of its head (a policy set by
    <meta> only covers what comes after it)."""
    head = re.search(r"<head\b[^>]*>", html, re.I)
    if head is None:
        return CSP_META + "\n" + html
    if html[head.end():].lstrip().startswith(CSP_META):
        return html
    return html[:head.end()] + "\n" + CSP_META + html[head.end():]


class FeedbackExporter(HTMLExporter):
    """The HTMLExporter of nbgrader's feedback, whose pages carry :data:`CSP_META` (set as
    ``GenerateFeedback.exporter_class``: every feedback run, in the worker or by hand, adds it)."""

    def from_notebook_node(self, nb: NotebookNode, resources: dict | None = None, **kw) -> tuple[str, dict]:
        # HTMLExporter.from_notebook_node, less its BeautifulSoup pass over the whole page (half of
        # a feedback page's time, paid for every submission): the same alt text and tabindex are
        # added by :func:`accessible` over the template's markup (student HTML is sanitized by then).
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        self.register_filter("highlight_code",
                             self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata,
                                                                        parent=self, resources=resources))
        output, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return add_csp(accessible(output)), resources


NO_ALT = re.compile(r"<img\b(?![^>]*\salt=)", re.I)
FOCUSABLE = re.compile(r'<div(?=\s+class="(?:[^"]*\s)?(?:jp-Cell-inputWrapper|jp-OutputArea-output)(?:\s[^"]*)?")')


def accessible(html: str) -> str:
    """What HTMLExporter's BeautifulSoup pass adds: an alt text on every image without one, and
    ``tabindex="0"`` on each cell's input and each output, so that a keyboard reaches them."""
    html = NO_ALT.sub('<img alt="No description has been provided for this image"', html)
    return FOCUSABLE.sub('<div tabindex="0"', html)
