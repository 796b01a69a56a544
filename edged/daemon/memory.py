"""The heap of a daemon that runs for months: cyclic garbage collected and glibc's free
pages given back, once a minute.

Every publish makes a new H.264 encoder (x264's threads and frame buffers), a new
encoder thread and new resamplers; PyAV and FFmpeg allocate through ``malloc``, from
whichever arena the allocating thread was given. When a publish ends, all of that is
freed, but glibc gives memory back to the system only from the top of an arena and only
when that top is large: the free chunks in the middle of the main heap and of the
threads' arenas stay resident, and the next encoder's buffers, made by other threads,
land elsewhere. RSS then grows with every restart although the memory in use does not.

Python's own collector adds to it: objects in reference cycles (frames, packets and
futures that point back at their owners) outlive their use until a full collection, which
CPython starts only when the long-lived objects have grown by a quarter, in a daemon
about once every 45 minutes: the C heap in use climbed by about 200 KB/min between two.
A full ``gc.collect()`` each interval frees them while they are few; its pause of the
event loop is logged (``heap_trim``) whenever it is the longest yet above 20 ms.

``malloc_trim(0)`` walks every arena and returns each free page to the system
(``madvise``), wherever it lies. :class:`Trimmer` calls it once a minute, from the
daemon itself, so it works the same under systemd, by hand and in tests, with nothing
to set in the environment. Where the C library has no ``malloc_trim`` (musl) it does
nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("edged.daemon.memory")

TRIM_EVERY_S = 60.0
"""How often the daemon gives its free C heap back; a trim of the daemon's heap (about
30 MB) takes a few milliseconds of the event loop."""


SLOW_S = 0.020
"""A pause of the event loop worth a log line."""


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
        """The longest collection and trim, seconds (the event loop waits that long)."""
        self.collected = 0
        """Unreachable objects the collections found."""

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Collect cyclic garbage and trim now; whether memory went back to the system."""
        started = time.perf_counter()
        self.collected += gc.collect()
        released = self._trim is not None and bool(self._trim(0))
        took = time.perf_counter() - started
        if took > max(self.longest_s, SLOW_S):
            log.info("heap_trim ms=%.1f collected=%d", took * 1000, self.collected)
        self.longest_s = max(self.longest_s, took)
        self.trims += 1
        self.released += released
        return released

    async def run(self) -> None:
        """Collect and trim every ``every`` seconds until cancelled."""
        if self._trim is None:
            log.debug("no malloc_trim in this C library: only cyclic garbage is collected")
        while True:
            await asyncio.sleep(self.every)
            self.trim()
