"""The C heap of a daemon that runs for months: glibc's malloc, trimmed now and then.

Every publish makes a new H.264 encoder (x264's threads and frame buffers), a new
encoder thread and new resamplers; PyAV and FFmpeg allocate through ``malloc``, from
whichever arena the allocating thread was given. When a publish ends, all of that is
freed, but glibc gives memory back to the system only from the top of an arena and only
when that top is large: the free chunks in the middle of the main heap and of the
threads' arenas stay resident, and the next encoder's buffers, made by other threads,
land elsewhere. RSS then grows with every restart although the memory in use does not.

``malloc_trim(0)`` walks every arena and returns each free page to the system
(``madvise``), wherever it lies. :class:`Trimmer` calls it once a minute, from the
daemon itself, so it works the same under systemd, by hand and in tests, with nothing
to set in the environment. Where the C library has no ``malloc_trim`` (musl) it does
nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections.abc import Callable

log = logging.getLogger("edged.daemon.memory")

TRIM_EVERY_S = 60.0
"""How often the daemon gives its free C heap back; a trim of the daemon's heap (about
30 MB) takes a few milliseconds of the event loop."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    function: Callable[[int], int] = trim
    return function


class Trimmer:
    """Gives the C heap's free pages back to the system every ``every`` seconds."""

    def __init__(self, every: float = TRIM_EVERY_S) -> None:
        self.every = every
        self._trim = _malloc_trim()
        self.trims = 0
        self.released = 0
        """How many trims gave memory back."""
        self.longest_s = 0.0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Trim now; whether any memory went back to the system."""
        if self._trim is None:
            return False
        started = time.perf_counter()
        released = bool(self._trim(0))
        self.longest_s = max(self.longest_s, time.perf_counter() - started)
        self.trims += 1
        self.released += released
        return released

    async def run(self) -> None:
        """Trim every ``every`` seconds until cancelled."""
        if self._trim is None:
            log.debug("no malloc_trim in this C library: the heap is left as it is")
            return
        while True:
            await asyncio.sleep(self.every)
            self.trim()
