"""What every capture and playback device shares: its error codes, the report callback, and
the retry loop with backoff that reopens it.

ALSA PCMs (:mod:`edged.media.alsa.pcm`), V4L2 cameras and files
(:mod:`edged.media.sources.v4l2`) and the picamera2 camera all report a failure with one
of their :class:`DeviceCodes` through an :data:`ErrorCallback`, and try again after a
:class:`Backoff` delay; a recorder reports through the same callback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..backoff import Backoff
from ..errors import ErrorCode

ErrorCallback = Callable[[int], None]
"""Called with a device's error code when it fails, and with 0 when it works again."""


@dataclass(frozen=True, slots=True)
class DeviceCodes:
    """The error codes of one kind of device."""

    not_found: ErrorCode
    open_failed: ErrorCode
    lost: ErrorCode


def retry_until_stopped(
    stop: threading.Event, backoff: Backoff, attempt: Callable[[], bool]
) -> None:
    """Call ``attempt`` until ``stop`` is set; after each one that failed (returned False),
    wait ``backoff.next()`` seconds (less when ``stop`` is set meanwhile)."""
    while not stop.is_set():
        if not attempt():
            stop.wait(backoff.next())
