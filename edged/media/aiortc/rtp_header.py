"""The RTP header aiortc's sender writes, made once per sender for the direct send path.

aiortc serializes each packet from an ``RtpPacket`` and the sender's negotiated
``HeaderExtensionsMap``; :class:`RtpHeaderTemplate` serializes one such packet and keeps
the bytes, so that per packet only the marker, sequence number, timestamp and
abs-send-time are written into it, byte for byte what aiortc would have sent.
"""

from __future__ import annotations

import struct

from aiortc import rtp as _rtp
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from .checks import AIORTC_VERSION, AiortcInternalsError, Checks, check_method

_RTP_PACKET_PARAMS = [
    "self",
    "payload_type",
    "marker",
    "sequence_number",
    "timestamp",
    "ssrc",
    "payload",
]

REQUIREMENTS: Checks = {
    "aiortc.rtp RtpPacket and HeaderExtensionsMap": lambda: (
        check_method(_rtp.RtpPacket, "__init__", _RTP_PACKET_PARAMS)
        or check_method(_rtp.HeaderExtensionsMap, "configure", ["self", "parameters"])
        or (None if _rtp.RTP_HISTORY_SIZE > 0 else "aiortc.rtp.RTP_HISTORY_SIZE is gone")
    ),
}

_UINT32 = struct.Struct("!I")


class RtpHeaderTemplate:
    """The RTP header aiortc's sender puts in front of each payload, made once per sender.

    aiortc serializes a template packet (its SSRC, the negotiated codec's payload type,
    ``mid`` and abs-send-time extensions as negotiated); per packet only the marker,
    sequence number, timestamp and abs-send-time are written into it.
    """

    def __init__(self, ssrc: int, parameters: RTCRtpSendParameters) -> None:
        payload_type = parameters.codecs[0].payloadType
        if payload_type is None:
            raise ValueError("the sender's codec has no payload type")
        extensions = _rtp.HeaderExtensionsMap()
        extensions.configure(parameters)

        def serialized(abs_send_time: int) -> bytes:
            packet = _rtp.RtpPacket(payload_type=payload_type, ssrc=ssrc)
            packet.extensions.mid = parameters.muxId
            packet.extensions.abs_send_time = abs_send_time
            return packet.serialize(extensions)

        low, high = serialized(0), serialized(0xFFFFFF)
        moved = [i for i, (a, b) in enumerate(zip(low, high, strict=True)) if a != b]
        if moved and moved != list(range(moved[0], moved[0] + 3)):
            raise AiortcInternalsError(f"aiortc {AIORTC_VERSION}: unexpected abs-send-time layout")
        at = moved[0] if moved else len(low)
        self.first_byte = low[0]
        self.payload_type = payload_type
        self._before, self._after = low[8:at], low[at + 3 :]
        self._has_abs_send_time = bool(moved)

    def tail(self, timestamp: int, abs_send_time: int) -> bytes:
        """The header from its timestamp on: timestamp, SSRC, header extensions."""
        if not self._has_abs_send_time:
            return _UINT32.pack(timestamp) + self._before
        return (
            _UINT32.pack(timestamp) + self._before + _UINT32.pack(abs_send_time)[1:] + self._after
        )
