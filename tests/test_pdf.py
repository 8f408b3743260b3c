"""The book as one PDF (`make pdf`, tools/make_pdf.py), read back as a reader's viewer would.

The PDF is printed here from the stored notebook outputs (the single-page HTML built with
warnings as errors into `_build/pdftest/`, then headless Chromium), and read with pypdf: it
opens, starts with a title page and a contents page whose page numbers are right, has the
chapters in the order of `_toc.yml` with their numbers, every figure as an image, every
labelled equation's number, links that land inside the document, and no raw TeX or glue
key in its text.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import headless  # noqa: E402
import make_pdf  # noqa: E402

BUILD_DIR = ROOT / "_build" / "pdftest"

pytestmark = [pytest.mark.browser, pytest.mark.pdf, pytest.mark.slow]


QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalize(text: str) -> str:
    """Text as a reader searches it: ligatures split (ﬃ -> ffi), typographic quotes straight
    (Sphinx curls a title's apostrophe), whitespace single spaces."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).translate(QUOTES)).strip()


def chapters() -> list[dict]:
    """Every chapter in the order of _toc.yml: its part, docname, number (None when its part
    is not numbered; numbering runs on across parts) and notebook cells."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found, number = [], 0
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            number += bool(part.get("numbered"))
            found.append({"part": part["caption"], "cells": cells_of(chapter["file"]),
                          "docname": chapter["file"],
                          "number": number if part.get("numbered") else None})
    return found


def cells_of(docname: str) -> list[dict]:
    """The cells of a notebook, or a markdown page as one markdown cell."""
    path = ROOT / docname
    path = next(p for p in (path, path.with_suffix(".ipynb"), path.with_suffix(".md"))
                if p.is_file())
    if path.suffix == ".ipynb":
        return json.loads(path.read_text())["cells"]
    return [{"cell_type": "markdown", "source": path.read_text()}]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def title_of(cells: list[dict]) -> str:
    first = next(source(c) for c in cells if c["cell_type"] == "markdown")
    return re.match(r"#\s+(.+)", first.strip()).group(1).strip()


def displayed_figures(cells: list[dict]) -> int:
    """PNG outputs the book shows: those of code cells whose output is not removed."""
    count = 0
    for cell in cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-output", "remove-cell"} & set(tags):
            continue
        count += sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
    return count


@pytest.fixture(scope="module")
def printed() -> dict:
    """Print the book from its stored outputs; return make_pdf's facts and the PDF's path."""
    if absent := headless.missing():
        reason = f"{' and '.join(absent)} not found: {headless.INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    headless.fetch_mathjax()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    config = headless.stored_outputs_config(BUILD_DIR)
    html = headless.build_book(BUILD_DIR, builder="singlehtml", config=config)
    pdf = BUILD_DIR / "book.pdf"
    facts = make_pdf.make_pdf(html, pdf, make_pdf.book_facts(config))
    return {**facts, "path": pdf}


@pytest.fixture(scope="module")
def reader(printed: dict):
    from pypdf import PdfReader

    return PdfReader(printed["path"], strict=True)


@pytest.fixture(scope="module")
def pages(reader) -> list[str]:
    return [normalize(page.extract_text()) for page in reader.pages]


def outline(reader) -> list[tuple[int, str, int]]:
    """(depth, title, 1-based page) of every bookmark, depth first."""
    flat = []

    def walk(items, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                flat.append((depth, normalize(item.title),
                             reader.get_destination_page_number(item) + 1))

    walk(reader.outline, 0)
    return flat


def test_title_page_and_contents(reader, pages: list[str], printed: dict) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert reader.metadata.title == config["title"]
    assert reader.metadata.author == config["author"]
    assert pages[0].startswith(normalize(config["title"])), pages[0][:200]
    assert normalize(config["author"]) in pages[0]
    assert re.match(r"(\d+ )?Contents ", pages[1]), pages[1][:200]  # after its page number
    # Every contents line names the page its heading is printed on, up to the first page.
    first = printed["pages"][printed["entries"][0]["id"]]
    contents = " ".join(pages[1:first - 1])
    for entry in printed["entries"]:
        page = printed["pages"][entry["id"]]
        heading = normalize(f"{entry['number']} {entry['title']}")
        # Without spaces: a two-digit number like "3.10." fills its column and pypdf reads
        # "3.10.Where"; the heading and its page still have to stand side by side.
        assert re.sub(r"\s", "", f"{heading} {page}") in re.sub(r"\s", "", contents), \
            f"no contents line {heading!r} ... {page}"
        # pypdf reads no text from MathJax's glyphs (Type 3 fonts): compare the words only.
        bare = re.sub(r"\s", "", normalize(f"{entry['number']} {entry['prose']}"))
        assert bare in re.sub(r"\s", "", pages[page - 1]), (
            f"{heading!r} is not on page {page}, as the contents say")


def test_chapters_in_order_numbered_and_bookmarked(reader, pages: list[str]) -> None:
    marks = outline(reader)
    book = chapters()
    top = [title for depth, title, _ in marks if depth == 0]
    root = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    intro = normalize(title_of(cells_of(root)))
    assert top == ["Contents", intro, *dict.fromkeys(normalize(c["part"]) for c in book)]
    expected = [normalize(f"{c['number']}. {title_of(c['cells'])}" if c["number"]
                          else title_of(c["cells"])) for c in book]
    found = [(title, page) for depth, title, page in marks if depth == 1 and title in expected]
    assert [title for title, _ in found] == expected, "chapters missing or out of order"
    starts = [page for _, page in found]
    assert starts == sorted(set(starts)), f"chapters do not start on increasing pages: {starts}"
    for title, page in found:
        assert title.replace(" ", "") in pages[page - 1].replace(" ", ""), (
            f"chapter {title!r} does not start on page {page}")


def test_every_figure_is_an_image(reader) -> None:
    expected = sum(displayed_figures(c["cells"]) for c in chapters())
    assert expected > 0
    images = set()

    def collect(resources) -> None:
        for ref in (resources or {}).get("/XObject", {}).values():
            xobject = ref.get_object()
            if xobject.get("/Subtype") == "/Image" and xobject["/Width"] >= 100:
                images.add(ref.idnum)
            elif xobject.get("/Subtype") == "/Form":
                collect(xobject.get("/Resources"))

    for page in reader.pages:
        collect(page.get("/Resources"))
    assert len(images) >= expected, f"{len(images)} images in the PDF, {expected} figures"


def font_types(resources) -> set[str]:
    """The /Subtype of every font a page or form uses, forms included."""
    found = set()
    for font in (resources or {}).get("/Font", {}).values():
        found.add(str(font.get_object().get("/Subtype")))
    for ref in (resources or {}).get("/XObject", {}).values():
        if ref.get_object().get("/Subtype") == "/Form":
            found |= font_types(ref.get_object().get("/Resources"))
    return found


def test_equations_rendered_and_numbered(reader, pages: list[str]) -> None:
    """Every labelled equation's number is printed, on a page that draws MathJax's glyphs
    (which Chromium embeds as Type 3 fonts; the text fonts are TrueType)."""
    for chapter in chapters():
        markdown = "".join(source(c) for c in chapter["cells"] if c["cell_type"] == "markdown")
        labels = re.findall(r"\$\$\s*\(([\w-]+)\)", markdown)
        for n in range(1, len(labels) + 1):
            number = f"({chapter['number']}.{n})"
            on = [i for i, text in enumerate(pages) if number in text]
            assert on, f"{chapter['docname']}: equation {number} missing"
            assert any("/Type3" in font_types(reader.pages[i].get("/Resources")) for i in on), (
                f"{chapter['docname']}: no typeset math on the page of equation {number}")


def test_no_raw_tex_or_glue_in_the_text(pages: list[str]) -> None:
    text = " ".join(pages)
    assert "$$" not in text
    assert "\\frac" not in text
    # A TeX command may appear only where the book shows code that contains it.
    code = "".join(source(c) for chapter in chapters() for c in chapter["cells"]
                   if c["cell_type"] == "code")
    code += "".join(p.read_text() for p in [*ROOT.glob("book/*.py"), *ROOT.glob("tests/*.py")])
    stray = set(re.findall(r"\\[A-Za-z]{2,}", text)) - set(re.findall(r"\\[A-Za-z]{2,}", code))
    assert not stray, f"raw TeX in the PDF's text: {sorted(stray)}"
    for pattern in (r"\{glue", r"glue:(text|any|figure|math|md)", r"\.ipynb::",
                    r"\{(numref|eq|cite|ref|doc)\}", r"\?\?"):
        found = re.findall(rf".{{0,40}}{pattern}.{{0,40}}", text)
        assert not found, f"unrendered markup in the PDF: {found[:3]}"


def test_links_stay_inside_the_document(reader) -> None:
    named = reader.named_destinations
    internal, external = 0, []
    for page in reader.pages:
        for ref in page.get("/Annots", []) or []:
            annotation = ref.get_object()
            if annotation.get("/Subtype") != "/Link":
                continue
            if "/Dest" in annotation:
                internal += 1
                assert str(annotation["/Dest"]) in named, f"dangling link {annotation['/Dest']}"
            elif "/A" in annotation and annotation["/A"].get("/S") == "/URI":
                external.append(str(annotation["/A"]["/URI"]))
    assert internal >= 50, f"only {internal} internal links (contents, equations, figures)"
    local = [u for u in external if re.match(r"https?://(127\.0\.0\.1|localhost)", u)]
    assert local == [], f"links into the print server instead of the document: {local[:3]}"


def test_no_web_furniture_printed(pages: list[str]) -> None:
    """The web page's navigation, search, buttons and footer stay off paper."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    text = " ".join(pages)
    for furniture in ("Skip to main content", "Back to top", "Ctrl+K", "Search", "Copyright",
                      f"By {config['author']}", "Print to PDF", "Download this page"):
        assert furniture not in text, f"the web page's {furniture!r} is printed"
