"""The built book in headless Chromium, offline: shared by the browser test, the PDF test and
`tools/make_pdf.py`.

`build_book` runs `jupyter-book build` (warnings as errors) and returns the output folder;
`stored_outputs_config` writes a copy of `_config.yml` that builds from the notebooks' stored
outputs instead of executing them. `serve` serves a folder on 127.0.0.1, `start` opens
Chromium with every other host unresolvable, and `wait_until_rendered` returns once the
page's images have loaded and MathJax has typeset every formula.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install -y chromium chromium-driver (see .ci/run)"

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


def fetch_mathjax() -> None:
    """Install the pinned MathJax the book serves (`make mathjax`); a no-op once there."""
    subprocess.run(["bash", str(ROOT / "tools" / "fetch_mathjax.sh")], cwd=ROOT, check=True)


def missing() -> list[str]:
    """The Chromium programs this machine lacks (empty when both are installed)."""
    return [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]


@contextlib.contextmanager
def start(window: str = "1280,900", timeout: int = 60):
    """Headless Chromium (a selenium driver) that can reach 127.0.0.1 and nothing else."""
    if absent := missing():
        raise FileNotFoundError(f"{' and '.join(absent)} not found: {INSTALL_HINT}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--window-size={window}", f"--user-data-dir={profile}",
        # No host but this machine resolves: a page that needs the internet fails here.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(timeout)
        driver.set_script_timeout(timeout)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free port of 127.0.0.1; yield its base URL (ending in /)."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def wait_until_rendered(driver) -> dict:
    """Wait for the open page's images and MathJax; return PAGE_FACTS_JS's facts about it."""
    outcome = driver.execute_async_script(WAIT_FOR_PAGE_JS)
    if outcome is not True:
        raise RuntimeError(f"{driver.current_url} did not finish rendering: {outcome}")
    return driver.execute_script(PAGE_FACTS_JS)


def stored_outputs_config(folder: Path, source: Path = ROOT) -> Path:
    """Write ``folder/_config.yml``: the book's config, building from stored outputs."""
    config = yaml.safe_load((source / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    # local_extensions paths are read relative to the config file, which moves here.
    extensions = config["sphinx"]["local_extensions"]
    config["sphinx"]["local_extensions"] = {k: str(source / v) for k, v in extensions.items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_book(path_output: Path | None = None, *, builder: str = "html",
               config: Path | None = None, source: Path = ROOT, echo: bool = False) -> Path:
    """``jupyter-book build -W -n --keep-going`` of ``source``; return the output folder
    (``<path_output>/_build/<builder>``). ``path_output`` defaults to ``source``, where
    `make book` builds, so a later build with another builder reuses its executed pages."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--builder", builder]
    if path_output is not None:
        command += ["--path-output", str(path_output)]
    if config is not None:
        command += ["--config", str(config)]
    result = subprocess.run([*command, str(source)], cwd=source, text=True,
                            capture_output=not echo)
    if result.returncode != 0:
        log = "" if echo else f":\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        raise RuntimeError(f"jupyter-book build --builder {builder} failed{log}")
    return Path(path_output or source) / "_build" / builder
