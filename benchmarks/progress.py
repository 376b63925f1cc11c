"""Progress on stderr: a tqdm bar on a terminal, plain lines elsewhere.

Written to a file or a CI log, a bar fills it with carriage returns and cursor codes; there
(and in worker processes, whose bars would collide with the driver's) each step prints one
plain line instead.
"""
from __future__ import annotations

import multiprocessing
import sys
import time

from tqdm import tqdm


def bars_wanted() -> bool:
    """True in the main process when stderr is a terminal."""
    return sys.stderr.isatty() and multiprocessing.parent_process() is None


class Progress:
    """``total`` steps of ``desc`` counted in ``unit``s; silent unless ``enabled``."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True,
                 leave: bool = True):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.enabled = enabled
        self.start = time.monotonic()
        self.bar = (tqdm(total=total, desc=desc, unit=unit, leave=leave)
                    if enabled and bars_wanted() else None)

    def update(self, note: str = "") -> None:
        """One more step done; ``note`` says which (plain lines only)."""
        self.done += 1
        if self.bar is not None:
            self.bar.update()
        elif self.enabled:
            elapsed = time.monotonic() - self.start
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s"
                  + (f" ({note})" if note else "") + f", {elapsed:.0f} s elapsed",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
