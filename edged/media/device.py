"""What every capture and playback device shares: its error codes, its state (the code it is
failing with, its losses, one log line per change), the report callback, and the retry
loop with backoff that reopens it.

ALSA PCMs (:mod:`edged.media.alsa.pcm`), V4L2 cameras and files
(:mod:`edged.media.sources.v4l2`) and the picamera2 camera all report a failure with one
of their :class:`DeviceCodes` through an :data:`ErrorCallback`, and try again after a
:class:`Backoff` delay; a recorder reports through the same callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..backoff import Backoff
from ..errors import ErrorCode
from ..logs import log_event

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


class DeviceState:
    """A device's health as its users see it: ``error_code`` (0 while it works, else the
    code it fails with), ``losses`` (failures counted by its owner's rule), and one log
    line per change, ``<event>_error`` or ``<event>_recovered`` with where the device is.

    The owner reports each change to its ``on_error`` on its event loop: :meth:`change`
    says whether there was one.
    """

    def __init__(self, log: logging.Logger, event: str, **where: object) -> None:
        self.error_code = 0
        self.losses = 0
        self._log = log
        self._event = event
        self._where = where

    @property
    def lost(self) -> bool:
        """Whether the device is unavailable now."""
        return self.error_code != 0

    def change(self, code: int, detail: str, *, loss: bool = False) -> bool:
        """Now failing with ``code`` (0: working again); ``loss`` counts one more loss.
        False when the code is the one already set (nothing to report)."""
        if loss:
            self.losses += 1
        if code == self.error_code:
            return False
        self.error_code = code
        level = logging.WARNING if code else logging.INFO
        event = f"{self._event}_{'error' if code else 'recovered'}"
        log_event(self._log, level, event, **self._where, code=code, detail=detail)
        return True


class ReportsDeviceState:
    """For a device's owner: its state's figures as read-only attributes of its own."""

    device: DeviceState

    @property
    def error_code(self) -> int:
        """0 while the device works, else why it does not (a 1005xxx code)."""
        return self.device.error_code

    @property
    def losses(self) -> int:
        return self.device.losses

    @property
    def lost(self) -> bool:
        """Whether the device is unavailable now."""
        return self.device.lost
