"""Where the book keeps what it makes: ``data/`` for MNIST, ``results/`` for trained runs.

Both sit at the repository root (the editable install points here), so every notebook,
test and benchmark shares them wherever it runs from. ``BOOK_ROOT`` overrides the root.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("BOOK_ROOT", Path(__file__).resolve().parent.parent))
DATA_DIR = ROOT / "data"
RESULTS_DIR = ROOT / "results"
