"""Two Sphinx additions the book needs (loaded through `sphinx.local_extensions` in _config.yml).

1. MathJax is served by the book itself: `tools/fetch_mathjax.sh` (run by `make mathjax`)
   installs a pinned MathJax from the npm registry into `_build/vendor/mathjax`; this
   extension copies that folder into `_static/mathjax` of the built HTML and points
   `mathjax_path` at it, so math renders with no network.
2. No inline script appears twice on a page: Sphinx 7.4 adds an inline script registered
   after the builder started (sphinx-thebe's `const THEBE_JS_URL = ...`) twice, and the
   second copy is a SyntaxError in the browser console (fixed upstream in Sphinx 8.2,
   sphinx-doc/sphinx#13402).
3. The repository button links to the repository the book was built from: the web address
   of the clone's `origin` remote where it has one (credentials dropped), else the address in
   `_config.yml`.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

MATHJAX_ENTRY = "mathjax/tex-mml-chtml.js"

# http(s)://[user[:password]@]host[:port]/path keeps its scheme and port; the ssh forms
# ssh://[user@]host[:port]/path, git://host/path and user@host:path map to https://host/path.
_HTTP_REMOTE = re.compile(r"(https?)://(?:[^@/]+@)?([^/@]+)/(.+?)(?:\.git)?/?")
_SSH_REMOTE = re.compile(r"(?:ssh|git)://(?:[^@/]+@)?([^/:@]+)(?::\d+)?/(.+?)(?:\.git)?/?"
                         r"|[^@/:]+@([^/:@]+):(?!/)(.+?)(?:\.git)?/?")


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


def web_address(remote: str) -> str | None:
    """The https address of a hosted git remote, or ``None`` for a local path or file URL.

    >>> web_address("git@github.com:owner/repo.git")
    'https://github.com/owner/repo'
    >>> web_address("https://user:token@gitlab.com/group/repo.git")
    'https://gitlab.com/group/repo'
    >>> web_address("/srv/git/repo") is None
    True
    """
    remote = remote.strip()
    if match := _HTTP_REMOTE.fullmatch(remote):
        return "{}://{}/{}".format(*match.groups())
    if match := _SSH_REMOTE.fullmatch(remote):
        host, path = (part for part in match.groups() if part is not None)
        return f"https://{host}/{path}"
    return None


def repository_address(source_dir: str | Path, configured: str) -> str:
    """Where the repository button should point for a book built from ``source_dir``: the
    hosted ``origin`` of the clone whose top level is ``source_dir``, else ``configured``."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source_dir), *args], capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != Path(source_dir).resolve():
            return configured  # a copy of the book inside some other repository
        remote = git("remote", "get-url", "origin")
    except (OSError, subprocess.CalledProcessError):  # no git, not a clone, or no origin
        return configured
    return web_address(remote) or configured


def link_repository(app: Sphinx, config: Config) -> None:
    """Point the theme's repository button at the clone's own hosted remote, if it has one."""
    options = dict(config.html_theme_options)
    configured = options.get("repository_url", "")
    if configured:
        options["repository_url"] = repository_address(app.srcdir, configured)
        config.html_theme_options = options


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
    app.connect("config-inited", link_repository)
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
