"""The book as a reader meets it: every page opened in headless Chromium.

The book is built (`jupyter-book build -W -n`, so with zero warnings) from the stored
notebook outputs into `_build/browser/`, served from 127.0.0.1, and opened with every other
host unresolvable, as on a machine with no internet. Each page must load with no broken
image, no console error, no resource from elsewhere and no unrendered math; each notebook
page offers its `.ipynb` for download. Screenshots go to `_build/screenshots/`.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
# Chromium, the local server, the build and the page scripts are shared with tools/make_pdf.py.
import headless  # noqa: E402
from headless import PAGE_FACTS_JS, VISIBLE_PROSE_JS, WAIT_FOR_PAGE_JS  # noqa: E402

BUILD_DIR = ROOT / "_build" / "browser"
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def toc_docnames() -> list[str]:
    """Every page of the book, in reading order, as Sphinx docnames (no suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]]
    stack = [*toc.get("chapters", []), *toc.get("parts", [])][::-1]
    while stack:
        entry = stack.pop()
        if "file" in entry:
            names.append(str(Path(entry["file"]).with_suffix("")))
        stack.extend([*entry.get("sections", []), *entry.get("chapters", [])][::-1])
    return names


def source_suffix(docname: str) -> str:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{docname}{suffix}").is_file():
            return suffix
    raise FileNotFoundError(f"{docname} is in _toc.yml but has no .ipynb or .md file")


PAGES = toc_docnames()


@pytest.fixture(scope="session")
def book_html() -> Path:
    """Build the book from stored outputs with warnings as errors; return the HTML folder."""
    headless.fetch_mathjax()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    config = headless.stored_outputs_config(BUILD_DIR)
    try:
        return headless.build_book(BUILD_DIR, config=config)
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def server(book_html: Path):
    """Serve the built HTML on a free port of 127.0.0.1; yield its base URL."""
    with headless.serve(book_html) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if absent := headless.missing():
        reason = f"{' and '.join(absent)} not found: {headless.INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with headless.start() as driver:
        yield driver


def mathjax_version() -> str:
    return (ROOT / "_build" / "vendor" / "mathjax" / "VERSION").read_text().strip()


@pytest.mark.parametrize("docname", PAGES)
def test_page_renders_offline(docname: str, server: str, browser, sphinx_ext) -> None:
    url = f"{server}{docname}.html"
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(url)
    assert browser.execute_async_script(WAIT_FOR_PAGE_JS) is True
    facts = browser.execute_script(PAGE_FACTS_JS)
    console = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]

    assert facts["ready"] == "complete"
    assert console == [], f"{docname}: console errors {console}"
    assert facts["broken"] == [], f"{docname}: broken images {facts['broken']}"
    elsewhere = [u for u in facts["resources"] + facts["images"]
                 if not u.startswith((server, "data:", "blob:"))]
    assert elsewhere == [], f"{docname}: loads resources from elsewhere: {elsewhere}"

    if facts["math"]:
        assert facts["mathjax"] == mathjax_version(), f"{docname}: MathJax not the local copy"
        assert facts["unrendered"] == [], f"{docname}: math left unrendered {facts['unrendered']}"
        assert facts["errors"] == [], f"{docname}: TeX errors {facts['errors']}"
    prose = browser.execute_script(VISIBLE_PROSE_JS)
    raw_tex = re.findall(r"\$\$|\\[A-Za-z]+|\\begin", prose)
    assert raw_tex == [], f"{docname}: raw TeX in the rendered text: {raw_tex[:5]}"

    # The download button offers the page's source (the notebook itself for a chapter).
    source = f"{server}_sources/{docname}{source_suffix(docname)}"
    assert source in facts["links"], f"{docname}: no download link to {source}"
    with urllib.request.urlopen(source) as response:
        assert response.status == 200
    configured = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    repository = sphinx_ext.repository_address(ROOT, configured)
    assert repository in facts["links"], f"{docname}: no link to the repository {repository}"

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    name = docname.replace("/", "_")
    assert browser.save_screenshot(str(SCREENSHOT_DIR / f"{name}.png"))
    # The whole page, beyond the window, for a person to look through.
    full, marker = full_page_screenshot(browser)
    (SCREENSHOT_DIR / f"{name}-full.png").write_bytes(full)
    assert marker == MARKER, f"{docname}: the full-page screenshot is shifted"


# A small square put at the start of the page's first heading: a full-page capture must show
# it where the page lays it out, or the capture has moved the content.
MARKER = (255, 0, 255)
PUT_MARKER_JS = """
const heading = Array.from(document.querySelectorAll('main h1'))
    .find(h => h.getBoundingClientRect().width > 0) || document.querySelector('main');
const marker = document.createElement('span');
marker.id = 'screenshot-marker';
marker.style.cssText = 'display: inline-block; width: 12px; height: 12px; background: #ff00ff';
heading.prepend(marker);
const box = marker.getBoundingClientRect();
return [Math.round(box.left + window.scrollX + 6), Math.round(box.top + window.scrollY + 6)];
"""


def full_page_screenshot(browser, max_height: int = 16000) -> tuple[bytes, tuple[int, ...]]:
    """PNG of the whole page at the window's width, and the colour that a capture of it shows
    where the page puts :data:`MARKER` (the marker is removed before the PNG is taken).

    The viewport is made as tall as the page and captured as it is. (Capturing beyond the
    viewport through a clip instead shifted the content of the chapters sideways in Chromium,
    the sidebar cut off, although nothing on the pages overflowed.)
    """
    from PIL import Image

    def capture() -> bytes:
        shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(shot["data"])

    width, height = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollHeight];")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, max_height), "deviceScaleFactor": 1,
        "mobile": False})
    try:
        browser.execute_script("window.scrollTo(0, 0);")
        x, y = browser.execute_script(PUT_MARKER_JS)
        marked = Image.open(io.BytesIO(capture())).convert("RGB")
        colour = marked.getpixel((x, y)) if x < marked.width and y < marked.height else ()
        browser.execute_script("document.getElementById('screenshot-marker').remove();")
        return capture(), colour
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_search_finds_the_root_page(server: str, browser) -> None:
    """The search box works offline: searching the root page's title lists that page."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")
    title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    browser.get(f"{server}search.html?q={urllib.parse.quote(title)}")
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script(
            "return document.querySelectorAll('#search-results li a').length"
        )
    )
    hits = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results li a')).map(a => a.href)"
    )
    assert f"{server}{PAGES[0]}.html" in hits
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
