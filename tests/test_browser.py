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
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "_build" / "browser"
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

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
    subprocess.run(["bash", str(ROOT / "tools" / "fetch_mathjax.sh")], cwd=ROOT, check=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # local_extensions paths are read relative to the config file, which moves here.
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in extensions.items()}
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    BUILD_DIR.mkdir(parents=True)
    (BUILD_DIR / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--path-output",
         str(BUILD_DIR), "--config", str(BUILD_DIR / "_config.yml"), str(ROOT)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, (
        f"jupyter-book build -W failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return BUILD_DIR / "_build" / "html"


@pytest.fixture(scope="session")
def server(book_html: Path):
    """Serve the built HTML on a free port of 127.0.0.1; yield its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        reason = (f"{' and '.join(missing)} not found: "
                  "apt-get install -y chromium chromium-driver (see .ci/run)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}",
        # No host but this machine resolves: a page that needs the internet fails here.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


# Text a reader sees, without code, and MathJax's output: raw TeX left there was not rendered.
VISIBLE_PROSE_JS = """
const main = document.querySelector('main') || document.body;
const copy = main.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, mjx-container, .MathJax').forEach(
    e => e.remove());
return copy.textContent;
"""

WAIT_FOR_PAGE_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => img.complete ? null :
    new Promise(ok => { img.addEventListener('load', ok); img.addEventListener('error', ok); }));
const typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise)
    || Promise.resolve();
Promise.all([typeset, ...images.filter(p => p)]).then(() => done(true), e => done(String(e)));
"""

PAGE_FACTS_JS = """
return {
  ready: document.readyState,
  mathjax: window.MathJax && MathJax.version ? MathJax.version : null,
  math: document.querySelectorAll('.math').length,
  unrendered: Array.from(document.querySelectorAll('.math'))
      .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
  errors: Array.from(document.querySelectorAll('mjx-merror'))
      .map(e => e.getAttribute('data-mjx-error') || e.textContent),
  broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.getAttribute('src')),
  images: Array.from(document.images).map(i => i.src),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
};
"""


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
    width, height = browser.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];"
    )
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 16000), "scale": 1},
    })
    (SCREENSHOT_DIR / f"{name}-full.png").write_bytes(base64.b64decode(shot["data"]))


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
