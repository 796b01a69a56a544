"""Sender reports whose packet and octet counts wrap at 32 bits, on every aiortc version.

1.16 wraps the packet and octet counts of its sender reports at 32 bits; 1.11 puts the
running totals in unwrapped, so after 4 GiB sent to one viewer (about 4.8 hours at
2 Mbit/s) ``struct.error`` ends that sender's RTCP task: no sender report again.
:func:`wrap_sender_report_counters` makes :class:`aiortc.rtp.RtcpSenderInfo` wrap them
itself, whatever the version. It patches aiortc for the whole process, so it is applied by
an explicit call where the engine starts (:class:`~edged.engine.engine.Engine`), never on
import.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiortc import rtp as _rtp

from .checks import Checks, check_fields

REQUIREMENTS: Checks = {
    "aiortc.rtp.RtcpSenderInfo": lambda: check_fields(
        _rtp.RtcpSenderInfo, ["ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"]
    ),
}

_UINT32_MASK = 0xFFFFFFFF


def wrap_sender_report_counters() -> None:
    """Serialize sender reports with their packet and octet counts wrapped at 32 bits, as
    RFC 3550 counts them on the wire (getStats keeps the full totals). Idempotent."""
    info = _rtp.RtcpSenderInfo
    if getattr(info.__bytes__, "_edged_wraps", False):
        return
    unwrapped = info.__bytes__

    def wrapped(self: Any) -> bytes:
        if self.packet_count <= _UINT32_MASK and self.octet_count <= _UINT32_MASK:
            return unwrapped(self)
        return unwrapped(
            dataclasses.replace(
                self,
                packet_count=self.packet_count & _UINT32_MASK,
                octet_count=self.octet_count & _UINT32_MASK,
            )
        )

    wrapped._edged_wraps = True  # type: ignore[attr-defined]
    info.__bytes__ = wrapped  # type: ignore[method-assign]
