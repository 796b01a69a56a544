"""What a fan-out needs from its one encoder: the :class:`PacketEncoder` protocol.

:class:`~edged.media.encoders.libx264.H264Encoder` (and the board's
:class:`~edged.media.encoders.v4l2m2m.V4l2m2mEncoder`) and
:class:`~edged.media.encoders.opus.OpusEncoder` provide it; so may a capture track's own
encoder, which then hands the fan-out packets instead of frames.
"""

from __future__ import annotations

from typing import Any, Protocol

import av


class PacketEncoder(Protocol):
    """What a fan-out needs from its one encoder (:class:`H264Encoder`, :class:`OpusEncoder`)."""

    frames_encoded: int
    encode_seconds: float

    def encode(self, frame: Any) -> list[av.Packet[Any]]: ...
    def request_keyframe(self) -> None: ...
    def set_bitrate(self, bitrate: int) -> int: ...
    def close(self) -> None: ...
