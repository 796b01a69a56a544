"""The one Opus encoder of an audio fan-out."""

from __future__ import annotations

import fractions
import time
from typing import Any

import av

OPUS_TIME_BASE = fractions.Fraction(1, 48000)
OPUS_FRAME_SAMPLES = 960


class OpusEncoder:
    """One libopus context: 48 kHz stereo, 20 ms packets, timestamped by a sample count."""

    def __init__(self, bitrate: int = 64000) -> None:
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = bitrate
        self.codec.format = "s16"
        self.codec.layout = "stereo"
        self.codec.sample_rate = 48000
        self.codec.time_base = OPUS_TIME_BASE
        self.codec.options = {"application": "voip"}
        self._resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=48000, frame_size=OPUS_FRAME_SAMPLES
        )
        self._pts = 0
        self.frames_encoded = 0
        self.encode_seconds = 0.0

    def encode(self, frame: av.AudioFrame) -> list[av.Packet[Any]]:
        started = time.perf_counter()
        packets: list[av.Packet[Any]] = []
        for chunk in self._resampler.resample(frame):
            self.frames_encoded += 1
            for packet in self.codec.encode(chunk):
                packet.pts = self._pts
                packet.time_base = OPUS_TIME_BASE
                self._pts += OPUS_FRAME_SAMPLES
                packets.append(packet)
        self.encode_seconds += time.perf_counter() - started
        return packets

    def request_keyframe(self) -> None:
        """Opus packets are all independent: nothing to do."""

    def set_bitrate(self, bitrate: int) -> int:
        """The bitrate is fixed once the codec is open."""
        return self.codec.bit_rate or 0

    def close(self) -> None:
        """Nothing to release beyond the codec context itself."""
