"""The one Opus encoder of an audio fan-out."""

from __future__ import annotations

import fractions
import time
from typing import Any

import av

from ..frames import audio_resampler

OPUS_TIME_BASE = fractions.Fraction(1, 48000)
OPUS_FRAME_SAMPLES = 960


class OpusEncoder:
    """One libopus context: 48 kHz stereo, 20 ms packets, timestamped by a sample count."""

    def __init__(self, bitrate: int = 64000) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bitrate
        codec.format = "s16"
        codec.layout = "stereo"
        codec.sample_rate = 48000
        codec.time_base = OPUS_TIME_BASE
        codec.options = {"application": "voip"}
        self._codec: av.AudioCodecContext | None = codec
        self._bitrate = bitrate
        self._resampler: av.AudioResampler | None = audio_resampler(
            "s16", "stereo", 48000, OPUS_FRAME_SAMPLES
        )
        self._pts = 0
        self.frames_encoded = 0
        self.encode_seconds = 0.0

    def encode(self, frame: av.AudioFrame) -> list[av.Packet[Any]]:
        started = time.perf_counter()
        packets: list[av.Packet[Any]] = []
        codec, resampler = self._codec, self._resampler
        if codec is None or resampler is None:
            raise RuntimeError("the Opus encoder is closed")
        for chunk in resampler.resample(frame):
            self.frames_encoded += 1
            for packet in codec.encode(chunk):
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
        return self._bitrate

    def close(self) -> None:
        """Release the codec context and the resampler now: each resampler (ours and the
        one PyAV keeps in the context) is a filter graph with a thread per core, which
        would otherwise wait for the garbage collector to reach this encoder's cycle."""
        self._codec = self._resampler = None
