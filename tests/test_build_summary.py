"""`make book` says what its build executed, and refuses to claim a build that ran nothing."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "build_summary.py"
spec = importlib.util.spec_from_file_location("build_summary", SCRIPT)
build_summary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_summary)

LOG = """\
reading sources... [ 20%] notebooks/01_lenet5
/repo/notebooks/01_lenet5.ipynb: Executing notebook using local CWD [mystnb]
/repo/notebooks/01_lenet5.ipynb: Executed notebook in 48.21 seconds [mystnb]
reading sources... [ 40%] notebooks/02_depthwise_separable
/repo/notebooks/02_depthwise_separable.ipynb: Executing notebook using local CWD [mystnb]
/repo/notebooks/02_depthwise_separable.ipynb: Executed notebook in 79.50 seconds [mystnb]
"""


def test_executed_notebooks_are_read_from_the_log_in_order():
    assert build_summary.executed(LOG) == [("01_lenet5.ipynb", 48.21),
                                           ("02_depthwise_separable.ipynb", 79.5)]


def run(tmp_path, log):
    path = tmp_path / "book.log"
    path.write_text(log)
    return subprocess.run([sys.executable, str(SCRIPT), str(path), "140"],
                          capture_output=True, text=True)


def test_summary_lists_each_notebook_and_the_total(tmp_path):
    done = run(tmp_path, LOG)
    assert done.returncode == 0
    assert "Executed 2 notebooks (128 s) and built the book in 140 s" in done.stdout
    assert "02_depthwise_separable.ipynb" in done.stdout


def test_a_build_that_executed_nothing_fails_and_says_so(tmp_path):
    done = run(tmp_path, "reading sources... [100%] intro\nbuild succeeded.\n")
    assert done.returncode == 1 and "executed no notebook" in done.stdout


def test_without_arguments_it_prints_its_usage_not_a_traceback():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python tools/build_summary.py LOG SECONDS")
    assert "Traceback" not in done.stderr


def test_a_missing_log_is_named(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "no.log"), "5"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and f"{tmp_path / 'no.log'} does not exist" in done.stderr
