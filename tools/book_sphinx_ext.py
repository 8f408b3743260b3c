"""Two Sphinx additions the book needs (loaded through `sphinx.local_extensions` in _config.yml).

1. MathJax is served by the book itself: `tools/fetch_mathjax.sh` (run by `make mathjax`)
   installs a pinned MathJax from the npm registry into `_build/vendor/mathjax`; this
   extension copies that folder into `_static/mathjax` of the built HTML and points
   `mathjax_path` at it, so math renders with no network.
2. No inline script appears twice on a page: Sphinx 7.4 adds an inline script registered
   after the builder started (sphinx-thebe's `const THEBE_JS_URL = ...`) twice, and the
   second copy is a SyntaxError in the browser console (fixed upstream in Sphinx 8.2,
   sphinx-doc/sphinx#13402).
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

MATHJAX_ENTRY = "mathjax/tex-mml-chtml.js"


def use_local_mathjax(app: Sphinx, config: Config) -> None:
    """Add the vendored MathJax to the static files and load it instead of a CDN copy."""
    vendor = Path(app.confdir, config.book_mathjax_vendor_dir).resolve()
    entry = vendor / MATHJAX_ENTRY
    if not entry.is_file():
        raise ConfigError(
            f"MathJax is missing: {entry} does not exist. Run `make mathjax` "
            "(bash tools/fetch_mathjax.sh) before building the book."
        )
    config.html_static_path = [*config.html_static_path, str(vendor)]
    config.mathjax_path = MATHJAX_ENTRY


def drop_duplicate_scripts(app: Sphinx, pagename, templatename, context: dict, doctree) -> None:
    """Keep the first of scripts that differ only in a `None` versus `''` filename."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", script.priority, *sorted(script.attributes.items()))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    app.add_config_value("book_mathjax_vendor_dir", "_build/vendor", "html", types=[str])
    # After sphinx.ext.mathjax has registered mathjax_path, before the builder reads it.
    app.connect("config-inited", use_local_mathjax, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
