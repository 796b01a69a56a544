"""Keyframe requests shared by all viewers of a stream, forwarded at a bounded rate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class KeyframeLimiter:
    """Forwards keyframe requests at most once per ``min_interval`` seconds.

    A request inside the interval is not lost: one trailing request is scheduled for the
    end of the interval (a timer owned here, cancelled by :meth:`close`), so a viewer
    joining just after another still gets its keyframe promptly.
    """

    def __init__(self, forward: Callable[[], None], min_interval: float = 0.5) -> None:
        self._forward = forward
        self.min_interval = min_interval
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.requests = 0
        self.forwarded = 0

    def request(self) -> bool:
        """Ask for a keyframe; True if it was forwarded at once."""
        self.requests += 1
        loop = asyncio.get_running_loop()
        if self._last is None or loop.time() - self._last >= self.min_interval:
            self._fire()
            return True
        if self._timer is None:
            self._timer = loop.call_at(self._last + self.min_interval, self._fire)
        return False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self.close()  # a late loop may fire directly while the trailing timer is still due
        self._last = asyncio.get_running_loop().time()
        self.forwarded += 1
        try:
            self._forward()
        except Exception:
            logger.exception("keyframe request failed")
