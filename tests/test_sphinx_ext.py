"""The repository link of the book's Sphinx extension (tools/book_sphinx_ext.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONFIGURED = "https://example.org/configured/address"


@pytest.mark.parametrize(("remote", "address"), [
    ("https://github.com/owner/repo.git", "https://github.com/owner/repo"),
    ("https://github.com/owner/repo/", "https://github.com/owner/repo"),
    ("https://user:secret-token@gitlab.com/group/sub/repo.git", "https://gitlab.com/group/sub/repo"),
    ("http://localhost:8000/owner/repo.git", "http://localhost:8000/owner/repo"),
    ("git@github.com:owner/repo.git\n", "https://github.com/owner/repo"),
    ("ssh://git@github.com:22/owner/repo.git", "https://github.com/owner/repo"),
    ("git://example.org/owner/repo", "https://example.org/owner/repo"),
    ("/srv/git/repo", None),
    ("../repo", None),
    ("file:///srv/git/repo", None),
    ("https://github.com", None),
])
def test_web_address(sphinx_ext, remote: str, address: str | None) -> None:
    assert sphinx_ext.web_address(remote) == address


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_the_link_follows_the_clones_hosted_origin(sphinx_ext, tmp_path: Path) -> None:
    assert sphinx_ext.repository_address(tmp_path, CONFIGURED) == CONFIGURED  # not a clone
    git(tmp_path, "init", "-q")
    assert sphinx_ext.repository_address(tmp_path, CONFIGURED) == CONFIGURED  # no origin
    git(tmp_path, "remote", "add", "origin", str(tmp_path.parent))
    assert sphinx_ext.repository_address(tmp_path, CONFIGURED) == CONFIGURED  # a local path
    git(tmp_path, "remote", "set-url", "origin", "https://bot:token@github.com/team/book.git")
    assert sphinx_ext.repository_address(tmp_path, CONFIGURED) == "https://github.com/team/book"
    # A copy of the book inside another repository is not that repository.
    (tmp_path / "copy").mkdir()
    assert sphinx_ext.repository_address(tmp_path / "copy", CONFIGURED) == CONFIGURED
