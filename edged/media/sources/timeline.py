"""One increasing output clock for an input read in segments (a reopened device, a looped file)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..h264 import VIDEO_TIME_BASE


class Timeline:
    """Places the timestamps of an input's successive segments (the device reopened, the
    file looped) on one increasing clock, and says when an unclocked input's item is due.

    A segment starts now, or right after the previous one (a seamless loop); within a
    segment the input's own timestamps keep their spacing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._origin: float | None = None
        self._anchor = 0.0
        self._first: float | None = None
        self._continuous = False
        self._last: float | None = None
        self._step = 1 / 30

    def next_segment(self, continuous: bool) -> None:
        """The next item starts a segment: right after the last one, or at the current time."""
        self._first = None
        self._continuous = continuous

    def place(self, source_s: float | None) -> float:
        """Seconds on the output timeline of an item at ``source_s`` in its segment."""
        now = self._clock()
        if self._origin is None:
            self._origin = now
        if source_s is None:
            out = now - self._origin
        else:
            if self._first is None:
                self._first = source_s
                if self._continuous and self._last is not None:
                    self._anchor = self._last + self._step
                else:
                    self._anchor = now - self._origin
            out = self._anchor + source_s - self._first
        if self._last is not None:
            if out <= self._last:
                out = self._last + 1 / VIDEO_TIME_BASE.denominator
            elif out - self._last < 1.0:
                self._step = out - self._last
        self._last = out
        return out

    def wait(self, out_s: float) -> float:
        """Seconds until the item at ``out_s`` is due (0 when it is late)."""
        origin = self._origin if self._origin is not None else self._clock()
        return max(0.0, origin + out_s - self._clock())
