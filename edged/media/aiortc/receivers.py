"""What edged does with aiortc's receivers: ask for a keyframe, or skip decoding.

:func:`send_pli` asks a receiver's remote senders for a keyframe. Inside
:func:`passthrough_receivers`, receivers hand out encoded frames instead of decoding them:
for benchmarks and tests whose viewers must not spend CPU on decoding. The receiver's
decoder thread (``rtcrtpreceiver.decoder_worker``) takes a decode-error event in 1.16 (it
then sends a PLI) and not in 1.11; both look ``get_decoder`` up in their module globals,
which is what :func:`passthrough_receivers` replaces.
"""

from __future__ import annotations

import fractions
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .checks import Checks, check_callable, check_calls, check_method

_GET_DECODER = "get_decoder"

REQUIREMENTS: Checks = {
    "RTCRtpReceiver._send_rtcp_pli": lambda: check_method(
        RTCRtpReceiver, "_send_rtcp_pli", ["self", "media_ssrc"], coroutine=True
    ),
    "rtcrtpreceiver.get_decoder": lambda: check_callable(_receiver_module, _GET_DECODER),
    "rtcrtpreceiver.decoder_worker uses get_decoder": lambda: check_calls(
        getattr(_receiver_module, "decoder_worker", None),
        "aiortc.rtcrtpreceiver.decoder_worker",
        ["get_decoder"],
    ),
    "JitterFrame(data, timestamp)": lambda: check_method(
        JitterFrame, "__init__", ["self", "data", "timestamp"]
    ),
}


async def send_pli(receiver: RTCRtpReceiver) -> int:
    """Ask the remote sender(s) of a receiver for a keyframe; returns how many SSRCs were asked.

    Only SSRCs heard from in the last 10 s are known; before the first packet this is 0.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return len(sources)


@dataclass
class PassthroughCounter:
    """Encoded frames handed out by receivers under :func:`passthrough_receivers`."""

    frames: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, size: int) -> None:
        with self._lock:
            self.frames[kind] = self.frames.get(kind, 0) + 1
            self.bytes += size


class PassthroughDecoder:
    """A stand-in decoder: turns each reassembled frame back into an ``av.Packet``."""

    def __init__(self, codec: RTCRtpCodecParameters, counter: PassthroughCounter) -> None:
        self.kind = codec.mimeType.split("/")[0].lower()
        self.time_base = fractions.Fraction(1, codec.clockRate)
        self.counter = counter

    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet[Any]]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = self.time_base
        self.counter.add(self.kind, len(encoded_frame.data))
        return [packet]


_passthrough_lock = threading.Lock()


class NonEmptyDecoder:
    """A receiver's decoder that is never handed an empty frame.

    aiortc gives a padding-only RTP packet (Chromium's bandwidth probes, which Janus
    forwards) an empty payload, and the jitter buffer can make a frame of it; an empty
    ``av.Packet`` tells libavcodec to drain, after which every later packet fails with
    "End of file" and the picture stops for good. This skips such frames.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        if not encoded_frame.data:
            return []
        frames: list[Any] = self.inner.decode(encoded_frame)
        return frames


def guard_empty_frames() -> None:
    """Make every receiver's decoder a :class:`NonEmptyDecoder` (process-wide, once;
    called where the engine starts)."""
    current = getattr(_receiver_module, _GET_DECODER)
    if getattr(current, "guards_empty_frames", False):
        return

    def get_decoder(codec: RTCRtpCodecParameters) -> Any:
        return NonEmptyDecoder(current(codec))

    get_decoder.guards_empty_frames = True  # type: ignore[attr-defined]
    setattr(_receiver_module, _GET_DECODER, get_decoder)


@contextmanager
def passthrough_receivers(kinds: Sequence[str] = ("video",)) -> Iterator[PassthroughCounter]:
    """Inside this block, receivers of ``kinds`` yield ``av.Packet`` instead of decoded frames.

    For benchmarks and relays whose viewers must not spend CPU on decoding. The patch is
    process-wide and taken when a receiver's decoder thread sees its first frame, so keep
    the block open for the receivers' whole life. Not reentrant.
    """
    if not _passthrough_lock.acquire(blocking=False):
        raise RuntimeError("passthrough_receivers() is already active")
    counter = PassthroughCounter()
    original: Callable[[RTCRtpCodecParameters], Any] = getattr(_receiver_module, _GET_DECODER)
    wanted = {k.lower() for k in kinds}

    def get_decoder(codec: RTCRtpCodecParameters) -> Any:
        if codec.mimeType.split("/")[0].lower() in wanted:
            return PassthroughDecoder(codec, counter)
        return original(codec)

    setattr(_receiver_module, _GET_DECODER, get_decoder)
    try:
        yield counter
    finally:
        setattr(_receiver_module, _GET_DECODER, original)
        _passthrough_lock.release()
