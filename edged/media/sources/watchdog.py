"""Noticing a source that stops delivering without raising an error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

STALL_TIMEOUT = 5.0
"""Seconds without a frame before an open camera counts as stalled (the default): well
above one frame interval at the lowest frame rate a camera is configured for (1 fps)."""


class StallWatchdog:
    """Owns one timer on the event loop that fires when an open source goes quiet.

    :meth:`arm` when the source has opened (the wait for its first item starts then),
    :meth:`feed` with every item, :meth:`disarm` while the source is known to be away
    (it reported its own error) and :meth:`close` at the end. When ``timeout`` seconds
    pass without an item while armed, ``on_stall`` is called once, on the loop; the
    watchdog then stays quiet until it is armed again. A ``timeout`` of 0 or None turns
    it off. Call every method on the event loop.
    """

    def __init__(self, timeout: float | None, on_stall: Callable[[], None]) -> None:
        self.timeout = timeout or 0.0
        self.stalls = 0
        """Times ``on_stall`` was called."""
        self._on_stall = on_stall
        self._armed = False
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        """Start (or restart) watching: a stall is ``timeout`` seconds from now without items."""
        if self.timeout <= 0:
            return
        self._armed = True
        self._last = time.monotonic()
        self._schedule(self._last + self.timeout)

    def feed(self) -> None:
        """An item arrived."""
        self._last = time.monotonic()

    def disarm(self) -> None:
        self._armed = False
        self._cancel()

    def close(self) -> None:
        self.disarm()

    def _schedule(self, due: float) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._check)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if not self._armed:
            return
        due = self._last + self.timeout
        if time.monotonic() < due:
            self._schedule(due)
            return
        self._armed = False
        self.stalls += 1
        self._on_stall()
