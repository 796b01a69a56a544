"""A send time carried inside each H.264 access unit, for viewers that never decode.

:func:`stamped` puts an SEI NAL unit (user data unregistered) holding the sender's
``time.monotonic_ns()`` in front of an access unit's first slice; :func:`read_stamp`
finds it again in a reassembled frame. The payload travels untouched through edged's
fan-out and through Janus (neither parses SEI), so a viewer on the same machine (same
monotonic clock) reads its one-way latency: packing, sending, the SFU's forwarding,
receiving and reassembly, everything short of decoding.
"""

from __future__ import annotations

import statistics
import time

UUID = b"edged-bench-time"  # 16 bytes, the SEI's uuid_iso_iec_11578; no zero byte anywhere
_SEI = b"\x00\x00\x00\x01\x06\x05" + bytes([len(UUID) + 16]) + UUID
_SLICE_TYPES = (1, 5)


def first_slice(unit: bytes) -> int:
    """Where the first slice NAL unit of an Annex-B access unit starts (its start code)."""
    at = 0
    while (at := unit.find(b"\x00\x00\x01", at)) >= 0:
        if unit[at + 3] & 0x1F in _SLICE_TYPES:
            return at - 1 if at and unit[at - 1] == 0 else at
        at += 3
    raise ValueError("no slice in the access unit")


def stamped(unit: bytes, slice_at: int) -> bytes:
    """``unit`` with the current time in an SEI just before its first slice (at ``slice_at``)."""
    stamp = b"%016x" % time.monotonic_ns()  # hex digits: no emulation prevention needed
    return unit[:slice_at] + _SEI + stamp + b"\x80" + unit[slice_at:]


def read_stamp(frame: bytes) -> int | None:
    """The ``time.monotonic_ns()`` stamped into ``frame``, or None."""
    at = frame.find(UUID)
    return None if at < 0 else int(frame[at + len(UUID) : at + len(UUID) + 16], 16)


def p50(samples: list[float]) -> float | None:
    return round(statistics.median(samples), 2) if samples else None
