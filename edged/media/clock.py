"""Monotonic pacing shared by the synthetic sources."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable


class Pacer:
    """Hands out numbered slots, slot ``n`` due at ``start + n * interval``.

    Owns only the schedule (no task): the start instant on the monotonic clock, the
    last slot handed out and how many slots were skipped. The schedule is anchored at
    the first call, so sleeping never accumulates drift. When the caller falls behind,
    at most ``catch_up`` overdue slots are handed out back to back; older ones are
    skipped (0 for video: always jump to the newest due frame; a few for audio, so a
    short stall is absorbed without a gap).
    """

    def __init__(
        self,
        interval: float,
        *,
        catch_up: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError("interval must be positive")
        if catch_up < 0:
            raise ValueError("catch_up must not be negative")
        self.interval = interval
        self.catch_up = catch_up
        self._clock = clock
        self._start: float | None = None
        self._last = -1
        self.slots_skipped = 0
        """Slots never handed out because the caller was late for them."""

    @property
    def started(self) -> bool:
        """Whether the first slot has been handed out."""
        return self._start is not None

    def deadline(self, slot: int) -> float:
        """Monotonic time at which ``slot`` is due (the schedule starts at the first slot)."""
        start = self._start if self._start is not None else self._clock()
        return start + slot * self.interval

    def claim(self) -> tuple[int, float]:
        """The next slot and how long to wait for it, without waiting; it is now handed out."""
        now = self._clock()
        if self._start is None:
            self._start = now
            self._last = 0
            return 0, 0.0
        slot = self._last + 1
        due = math.floor((now - self._start) / self.interval)
        if due - slot > self.catch_up:
            newest = due - self.catch_up
            self.slots_skipped += newest - slot
            slot = newest
        self._last = slot
        return slot, max(0.0, self._start + slot * self.interval - now)

    async def next_slot(self) -> int:
        """Wait until the next slot is due and return its number."""
        slot, wait = self.claim()
        if wait > 0:
            await asyncio.sleep(wait)
        return slot
