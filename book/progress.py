"""Progress of long work: a line that rewrites itself in Jupyter, a summary in stored output.

Every training loop of the book reports through :class:`Progress`. In a live Jupyter kernel
the line updates in place (with a bar, at most four times a second); what stays in the
notebook afterwards is the final, deterministic summary given to :meth:`Progress.close`, so
stored outputs never depend on timing. Outside Jupyter only the lines that are not
``detail`` are printed, and only when enabled.
"""

from __future__ import annotations

import math
import time

__all__ = ["Progress", "bar"]


def bar(fraction: float, width: int = 30) -> str:
    """``[#####-----]``: ``fraction`` (0..1) of ``width`` characters filled."""
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class Progress:
    """One line that rewrites itself in Jupyter; silent elsewhere unless ``enabled``."""

    def __init__(self, enabled: bool) -> None:
        self.handle = None
        self.enabled = enabled
        self.last = -math.inf
        if not enabled:
            return
        try:
            from IPython import get_ipython
            from IPython.display import Pretty, display
        except ImportError:
            return
        if get_ipython() is not None:
            self.pretty = Pretty
            self.handle = display(Pretty(""), display_id=True)

    def __call__(self, text: str, *, detail: bool = False) -> None:
        """Show ``text``; ``detail`` lines are shown in Jupyter only, at most 4 times a second."""
        if self.handle is not None:
            now = time.monotonic()
            if not detail or now - self.last >= 0.25:
                self.handle.update(self.pretty(text))
                self.last = now
        elif self.enabled and not detail:
            print(text, flush=True)

    def close(self, text: str = "") -> None:
        """Leave ``text`` as the line's final state: what a stored notebook keeps."""
        if self.handle is not None:
            self.handle.update(self.pretty(text))
        elif self.enabled and text:
            print(text, flush=True)
