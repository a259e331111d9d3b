"""A small progress bar for long work (export, import, migrate), written to stderr.

On a terminal it redraws one line in place, a few times a second, with the rate and the time
left. When stderr is a file or a pipe (a cron job, CI) it writes a plain line now and then
instead, so logs show that work goes on without filling up with redraws.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressBar"]

_REDRAW = 0.1
"""Seconds between redraws on a terminal."""
_LOG_EVERY = 10.0
"""Seconds between plain lines when not on a terminal."""


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _count(value: float) -> str:
    """A count as 950, 12.3k or 4.5M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


class ProgressBar:
    """Shows how far ``(done, total)`` has come; call it with each update.

    Args:
        label: What is being done, e.g. ``"migrate"``.
        unit: What is counted, e.g. ``"items"``.
        stream: Where to write; stderr by default.
        enabled: Write nothing at all when False (``--quiet``).
        clock: Monotonic seconds; replaceable in tests.
    """

    def __init__(
        self,
        label: str,
        unit: str = "items",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.terminal = enabled and self.stream.isatty()
        self._clock = clock
        self._started = clock()
        # Off a terminal the first line waits a full interval: short work prints none.
        self._last_draw = float("-inf") if self.terminal else self._started
        self._drawn = False
        self._done = self._total = 0
        self._room: tuple[tuple[int, int], int] | None = None

    def __call__(self, done: int, total: int) -> None:
        """Record progress and redraw if it is time to."""
        self._done, self._total = done, total
        if not self.enabled:
            return
        now = self._clock()
        every = _REDRAW if self.terminal else _LOG_EVERY
        if now - self._last_draw >= every or (self.terminal and done >= total):
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the bar as it stands (without the bar itself when not on a terminal)."""
        now = self._clock() if now is None else now
        done, total = self._done, self._total
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        share = done / total if total else 1.0
        left = f"{_duration((total - done) / rate)} left" if rate > 0 and done < total else ""
        numbers = f"{done:,}/{total:,} {self.unit}"
        took = f"{_duration(elapsed)} elapsed"
        stats = f"{share:6.1%}  {numbers}  {_count(rate)}/s  {took}  {left}".rstrip()
        if not self.terminal:
            return f"{self.label}: {stats}"
        width = shutil.get_terminal_size((80, 24)).columns
        if self._room is None or self._room[0] != (width, total):
            # Sized once per width and total for the widest stats, so the bar never jumps.
            widest = (
                f"100.0%  {total:,}/{total:,} {self.unit}  999.9k/s  9:59:59 elapsed  9:59:59 left"
            )
            self._room = (
                (width, total),
                max(10, min(40, width - len(self.label) - len(widest) - 6)),
            )
        room = self._room[1]
        filled = round(room * share)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}] {stats}"[: width - 1]

    def _draw(self, now: float) -> None:
        if self.terminal:
            self.stream.write("\r\x1b[K" + self.line(now))
            self._drawn = True
        else:
            self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal, so later output starts on a fresh one."""
        if self.terminal and self._drawn:
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
