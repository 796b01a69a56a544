"""Exponential backoff: the delays between retries, written once for every retry loop.

Devices reopening (:mod:`edged.media`), signaling reconnecting and the room logging in
again (:mod:`edged.engine`), the MQTT channel and the daemon's supervisor
(:mod:`edged.daemon`) all wait ``first``, then twice that, up to ``maximum``, and start
again from ``first`` after a success. It imports nothing of edged, so any layer may use it.
"""

from __future__ import annotations


class Backoff:
    """Owns one retry loop's next delay: ``first``, doubling up to ``maximum``; reset on
    success."""

    def __init__(self, first: float, maximum: float) -> None:
        if not 0 < first <= maximum:
            raise ValueError("need 0 < first <= maximum")
        self.first = first
        self.maximum = maximum
        self._next = first

    @property
    def delay(self) -> float:
        """The delay :meth:`next` returns next, without advancing."""
        return self._next

    def next(self) -> float:
        """The delay to wait now; the one after it doubles (up to ``maximum``)."""
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay

    def reset(self) -> None:
        """After a success: the next delay is ``first`` again."""
        self._next = self.first
