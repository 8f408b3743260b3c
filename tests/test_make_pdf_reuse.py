"""`make pdf` says when it will execute every notebook instead of reusing `make book`'s pages."""

import pickle
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from make_pdf import why_notebooks_run_again  # noqa: E402


def environment(build_parent: Path, srcdir: Path) -> None:
    doctrees = build_parent / "_build" / ".doctrees"
    doctrees.mkdir(parents=True)
    (doctrees / "environment.pickle").write_bytes(
        pickle.dumps(types.SimpleNamespace(srcdir=str(srcdir))))


def test_a_build_of_this_checkout_is_reused(tmp_path):
    environment(tmp_path, tmp_path)
    assert why_notebooks_run_again(tmp_path, source=tmp_path) is None


def test_a_build_made_in_another_folder_is_named(tmp_path):
    environment(tmp_path, Path("/somewhere/else"))
    reason = why_notebooks_run_again(tmp_path, source=tmp_path)
    assert "/somewhere/else" in reason and str(tmp_path) in reason


def test_no_build_yet_is_said(tmp_path):
    assert "no build" in why_notebooks_run_again(tmp_path, source=tmp_path)


def test_a_damaged_environment_is_said(tmp_path):
    (tmp_path / "_build" / ".doctrees").mkdir(parents=True)
    (tmp_path / "_build" / ".doctrees" / "environment.pickle").write_bytes(b"not a pickle")
    assert "cannot be read" in why_notebooks_run_again(tmp_path, source=tmp_path)
