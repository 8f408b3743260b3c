"""Say what a `jupyter-book build` actually executed, from its log (myst-nb's info lines).

Usage: python tools/build_summary.py LOG SECONDS. Prints one line per executed notebook and
the total, and exits with status 1 when the build executed no notebook at all, so `make book`
can never claim work it did not do.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# myst-nb logs through Sphinx with the document as location: "<path>.ipynb: Executed ..."
EXECUTED = re.compile(r"(\S+\.ipynb): Executed notebook in ([\d.]+) seconds")


def executed(log: str) -> list[tuple[str, float]]:
    """``(notebook, seconds)`` in the order the build ran them."""
    return [(Path(m.group(1)).name, float(m.group(2))) for m in EXECUTED.finditer(log)]


def main() -> int:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print("usage: python tools/build_summary.py LOG SECONDS\n"
              "  LOG: the log of `jupyter-book build`; SECONDS: how long the build took",
              file=sys.stderr)
        return 2
    log_path, seconds = Path(sys.argv[1]), int(sys.argv[2])
    if not log_path.is_file():
        print(f"build_summary: the log {log_path} does not exist; pass the file that "
              "`jupyter-book build` wrote its output to", file=sys.stderr)
        return 2
    runs = executed(log_path.read_text(errors="replace"))
    for name, took in runs:
        print(f"  executed {name:<34} {took:6.1f} s")
    if not runs:
        print(f"The build executed no notebook (see {log_path}); nothing was re-run.")
        return 1
    print(f"Executed {len(runs)} notebooks ({sum(t for _, t in runs):.0f} s) and built the "
          f"book in {seconds} s: _build/html/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
