"""A progress bar for the ``kilonova manage`` commands that can take long (an audit of every provider, a
sync of every cell database): one line on stderr, redrawn in place, only when stderr is a terminal --
scripts and logs that capture the output get exactly what they got before.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
# Redraw at most this often: a bar must not cost what it measures.
INTERVAL = 0.1


class Progress:
    def __init__(self, what: str, total: int, stream: TextIO | None = None):
        self.what = what
        self.total = max(0, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.total > 0 and getattr(self.stream, "isatty", lambda: False)()
        self._drawn_at = 0.0
        self._draw(force=True)

    def advance(self, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        self._draw(force=self.done == self.total)

    def finish(self) -> None:
        """The bar at its end and the line closed (call it also when the work stopped early)."""
        if self.shown:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    def _draw(self, force: bool = False) -> None:
        if not self.shown:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < INTERVAL:
            return
        self._drawn_at = now
        filled = WIDTH * self.done // self.total
        self.stream.write(f"\r{self.what}: [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total}")
        self.stream.flush()
