"""Say what a `jupyter-book build` actually executed, from its log (myst-nb's info lines).

Usage: python tools/build_summary.py LOG SECONDS. Prints one line per executed notebook and
the total, and exits with status 1 when the build executed no notebook at all, so `make book`
can never claim work it did not do.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

EXECUTING = re.compile(r"Executing notebook using .*?:\s*(\S+\.ipynb)")
EXECUTED = re.compile(r"Executed notebook in ([\d.]+) seconds")


def executed(log: str) -> list[tuple[str, float]]:
    """``(notebook, seconds)`` in the order the build ran them."""
    runs, current = [], None
    for line in log.splitlines():
        if match := EXECUTING.search(line):
            current = Path(match.group(1)).name
        elif (match := EXECUTED.search(line)) and current is not None:
            runs.append((current, float(match.group(1))))
            current = None
    return runs


def main() -> int:
    log_path, seconds = Path(sys.argv[1]), int(sys.argv[2])
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
