"""The kernel the notebooks name (`make kernel`, used by `make lab` and `make book`).

Every notebook's metadata names the kernelspec `efficient-nn-book`, which `make kernel`
installs into the venv. Here that spec is looked up by name, started, and made to run a
chapter top to bottom, as JupyterLab would: a missing or broken spec (a stale path to
Python, a kernel without `book` or with another torch) fails here, not in a reader's hands.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "efficient-nn-book"
# A short chapter (about 10 s): Part d, derived and checked, no training.
CHAPTER = ROOT / "notebooks" / "04_operation_mapping.ipynb"


def makefile_kernel() -> str:
    return re.search(r"^KERNEL := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


def pinned(package: str) -> str:
    text = (ROOT / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


@pytest.fixture(scope="module")
def spec():
    """The installed kernelspec, found the way Jupyter started from the venv finds it."""
    try:
        return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no kernelspec {KERNEL!r} in {sys.prefix}: run `make kernel`")


def run(cells: list[str], timeout: int = 120) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    return NotebookClient(notebook, kernel_name=KERNEL, timeout=timeout,
                          resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()


def text_of(cell) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   for o in cell.outputs)


def printed_lines(cell) -> list[str]:
    """What a cell printed, one entry per line: a path with spaces stays one entry."""
    return text_of(cell).splitlines()


def test_printed_paths_with_spaces_are_read_whole() -> None:
    cell = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="/tmp/a clone/book/__init__.py\n2.14.1\n")])
    assert printed_lines(cell) == ["/tmp/a clone/book/__init__.py", "2.14.1"]


def test_every_notebook_names_the_kernel() -> None:
    assert makefile_kernel() == KERNEL
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        kernelspec = json.loads(path.read_text())["metadata"].get("kernelspec", {})
        assert kernelspec.get("name") == KERNEL, f"{path.name} names {kernelspec}"


@pytest.mark.slow
def test_kernel_is_the_venv_with_book_and_the_pinned_torch(spec) -> None:
    python = Path(spec.argv[0])
    assert python.parent == Path(sys.executable).parent, (
        f"{KERNEL} runs {python}, not this venv's Python: run `make kernel` again")
    outputs = run([
        "import sys; print(sys.prefix)",
        "import book, torch; print(book.__file__); print(torch.__version__)",
        "from book.paths import RESULTS_DIR; print(RESULTS_DIR)",
        # What the training loop's progress line needs: a live IPython that displays.
        "from IPython import get_ipython; print(type(get_ipython()).__name__)",
    ])
    prefix, imported, results, shell = (printed_lines(c) for c in outputs.cells)
    assert Path(prefix[0]) == Path(sys.prefix)
    assert Path(imported[0]).parent == ROOT / "book"
    assert imported[1].split("+")[0] == pinned("torch")
    # Finished runs are found in the repository's results/ whatever folder Jupyter opens in.
    assert Path(results[0]) == ROOT / "results"
    assert shell == ["ZMQInteractiveShell"]


@pytest.mark.slow
def test_a_chapter_runs_top_to_bottom_in_the_kernel(spec) -> None:
    stored = nbformat.read(CHAPTER, as_version=4)
    notebook = nbformat.read(CHAPTER, as_version=4)
    NotebookClient(notebook, kernel_name=KERNEL, timeout=600,
                   resources={"metadata": {"path": str(CHAPTER.parent)}}).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", [])
              if o.output_type == "error" or o.get("name") == "stderr"]
    assert errors == [], f"{CHAPTER.name} wrote errors or warnings: {errors[:2]}"
    # The glued numbers the prose cites come out as stored (but for the machine-dependent
    # ones, in cells tagged for nbval to ignore).
    assert glued(notebook) and glued(notebook) == glued(stored)


@pytest.mark.slow
def test_training_shows_a_progress_bar_in_the_kernel(spec) -> None:
    """A short training run, as a notebook cell in that kernel, redraws a progress bar."""
    from jupyter_client.manager import start_new_kernel

    code = (
        "import tempfile\n"
        "from book.mnist.data import load_mnist\n"
        "from book.mnist.models import LeNet5\n"
        "from book.mnist.training import TrainConfig, train\n"
        "config = TrainConfig(max_epochs=1, train_limit=2048, val_size=512)\n"
        "with tempfile.TemporaryDirectory() as folder:\n"
        "    train('tiny', LeNet5, load_mnist(), config, results_dir=folder)\n"
    )
    manager, client = start_new_kernel(kernel_name=KERNEL, cwd=str(ROOT / "notebooks"))
    shown = []
    try:
        request = client.execute(code)
        while True:
            message = client.get_iopub_msg(timeout=300)
            if message["parent_header"].get("msg_id") != request:
                continue
            kind, content = message["msg_type"], message["content"]
            assert kind != "error", "\n".join(content["traceback"])
            if kind in ("display_data", "update_display_data"):
                shown.append((kind, content["data"].get("text/plain", "")))
            if kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    bars = [text for kind, text in shown
            if kind == "update_display_data" and re.search(r"\[#*-*\]", text)]
    assert bars, f"no progress bar was drawn: {shown}"


def glued(notebook) -> dict[str, str]:
    """``glue`` key -> the value's text, from cells whose output must not vary."""
    return {o.metadata["scrapbook"]["name"]: o.data["application/papermill.record/text/plain"]
            for c in notebook.cells for o in c.get("outputs", [])
            if "scrapbook" in o.get("metadata", {})
            and "nbval-ignore-output" not in c.get("metadata", {}).get("tags", [])}
