"""A tiny progress bar for long runs, on stderr (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(total, label)(done)`` redraws at most every 0.2 s; ``close()`` ends the line.

    Disabled (a no-op) unless ``enabled``; the CLI enables it when stderr is a TTY or with
    ``--progress``.
    """

    def __init__(self, total: int, label: str, enabled: bool, stream: TextIO | None = None, width: int = 30):
        self.total, self.label, self.enabled, self.width = max(int(total), 1), label, enabled, width
        self.stream = stream if stream is not None else sys.stderr
        self._last = 0.0
        self._start = time.monotonic()
        self._drawn = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < 0.2:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * self.width)
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {frac:6.1%} {now - self._start:5.1f}s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_enabled(flag: bool, stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    return bool(flag) or bool(getattr(stream, "isatty", lambda: False)())


class Stages:
    """``Stages(enabled)(stage, done, total)``: one bar per stage of a run of several passes (the
    ``on_progress`` of ``replay.partitioned``); a new stage ends the bars before it. ``close()``."""

    def __init__(self, enabled: bool, stream: TextIO | None = None):
        self.enabled, self.stream = enabled, stream
        self.bars: dict[str, Progress] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            self.close()
            bar = self.bars[stage] = Progress(total, stage, self.enabled, self.stream)
        bar(done)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
