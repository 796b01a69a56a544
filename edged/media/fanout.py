"""Encode once, send to many: one encoder per published stream, fanned out to every viewer.

A source is read by one task; each frame is encoded once (a source that already yields
``av.Packet`` — a hardware encoder, picamera2 — passes through untouched) and the packet
is offered to every viewer's bounded queue. A video viewer whose queue overflows is
emptied, skips packets until the next keyframe and asks for one. Joining viewers and
PLI/FIR from any viewer ask for a keyframe too, through one limiter shared by all.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import av
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edged.media.aiortc_internals import SenderHook, hook_sender, prefer_codec
from edged.media.h264 import VIDEO_TIME_BASE, H264Encoder, H264Settings, is_keyframe

logger = logging.getLogger(__name__)

Source = MediaStreamTrack | AsyncIterator[Any]
"""A track yielding frames (encoded here) or ``av.Packet`` (passed through), or an async
iterator of ``av.Packet``."""

OPUS_TIME_BASE = fractions.Fraction(1, 48000)
OPUS_FRAME_SAMPLES = 960


class PacketEncoder(Protocol):
    """What a fan-out needs from its one encoder (:class:`H264Encoder`, :class:`OpusEncoder`)."""

    frames_encoded: int
    encode_seconds: float

    def encode(self, frame: Any) -> list[av.Packet[Any]]: ...
    def request_keyframe(self) -> None: ...
    def set_bitrate(self, bitrate: int) -> int: ...
    def close(self) -> None: ...


@runtime_checkable
class KeyframeSource(Protocol):
    """A pre-encoded source (hardware encoder, camera) that can be asked for an IDR."""

    def request_keyframe(self) -> None: ...


@runtime_checkable
class BitrateSource(Protocol):
    """A pre-encoded source whose bitrate can be changed while it runs."""

    def set_bitrate(self, bitrate: int) -> int: ...


class KeyframeLimiter:
    """Forwards keyframe requests at most once per ``min_interval`` seconds.

    A request inside the interval is not lost: one trailing request is scheduled for the
    end of the interval (a timer owned here, cancelled by :meth:`close`), so a viewer
    joining just after another still gets its keyframe promptly.
    """

    def __init__(self, forward: Callable[[], None], min_interval: float = 0.5) -> None:
        self._forward = forward
        self.min_interval = min_interval
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.requests = 0
        self.forwarded = 0

    def request(self) -> bool:
        """Ask for a keyframe; True if it was forwarded at once."""
        self.requests += 1
        loop = asyncio.get_running_loop()
        if self._last is None or loop.time() - self._last >= self.min_interval:
            self._fire()
            return True
        if self._timer is None:
            self._timer = loop.call_at(self._last + self.min_interval, self._fire)
        return False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self.close()  # a late loop may fire directly while the trailing timer is still due
        self._last = asyncio.get_running_loop().time()
        self.forwarded += 1
        try:
            self._forward()
        except Exception:
            logger.exception("keyframe request failed")


@dataclass(frozen=True)
class ViewerStats:
    """One viewer's counters (``keyframe_requests``: PLI/FIR from its receiver)."""

    name: str
    sent: int
    dropped: int
    queued: int
    waiting_for_keyframe: bool
    keyframe_requests: int
    remb_bitrate: int | None


class ViewerTrack(MediaStreamTrack):
    """One viewer's end of a fan-out: owns a bounded queue of shared encoded packets.

    Its ``recv()`` is read by the viewer's ``RTCRtpSender``, which packs the packets
    without re-encoding them. When ``gated`` (video) the viewer starts at a keyframe;
    on overflow it drops everything queued, skips packets until the next keyframe and
    calls ``on_overflow`` to get one soon. Otherwise overflow drops the queued packets.
    """

    gated = False

    def __init__(
        self,
        name: str,
        maxsize: int,
        on_overflow: Callable[[], object] | None = None,
        on_stop: Callable[[ViewerTrack], None] | None = None,
    ) -> None:
        super().__init__()
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(maxsize)
        self._awaiting_keyframe = self.gated
        self._on_overflow = on_overflow
        self._on_stop = on_stop
        self.sender_hook: SenderHook | None = None
        self.sent = 0
        self.dropped = 0

    def push(self, packet: av.Packet[Any], keyframe: bool) -> None:
        """Offer one packet; never blocks (drops instead)."""
        if self.readyState != "live":
            return
        if self._awaiting_keyframe and not keyframe:
            self.dropped += 1
            return
        if self._queue.full():
            self.dropped += self._flush()
            if self.gated and not keyframe:
                self.dropped += 1
                self._awaiting_keyframe = True
                if self._on_overflow is not None:
                    self._on_overflow()
                return
        self._awaiting_keyframe = False
        self._queue.put_nowait(packet)

    def end(self) -> None:
        """The source has ended: ``recv()`` raises once the queue is read."""
        if self._queue.full():
            self.dropped += self._flush()
        self._queue.put_nowait(None)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        self.sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState != "live":
            return
        super().stop()
        self.end()
        if self.sender_hook is not None:
            self.sender_hook.remove()
        if self._on_stop is not None:
            self._on_stop(self)

    def stats(self) -> ViewerStats:
        hook = self.sender_hook
        return ViewerStats(
            name=self.name,
            sent=self.sent,
            dropped=self.dropped,
            queued=self._queue.qsize(),
            waiting_for_keyframe=self._awaiting_keyframe,
            keyframe_requests=hook.keyframe_requests if hook else 0,
            remb_bitrate=hook.remb_bitrate if hook else None,
        )

    def _flush(self) -> int:
        count = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            count += 1
        return count


class ViewerVideoTrack(ViewerTrack):
    """A viewer's H.264 track: starts, and resumes after an overflow, at a keyframe."""

    kind = "video"
    gated = True


class ViewerAudioTrack(ViewerTrack):
    """A viewer's Opus track: every packet stands alone, so nothing waits for a keyframe."""

    kind = "audio"


@dataclass(frozen=True)
class FanoutStats:
    """A fan-out's counters; ``encoders_created`` is 1 with a frame source, 0 in pass-through."""

    frames_in: int
    frames_idle: int
    frames_encoded: int
    packets_out: int
    keyframes_out: int
    encoders_created: int
    encode_ms_mean: float
    keyframe_requests: dict[str, int]
    keyframes_forwarded: int
    viewers: tuple[ViewerStats, ...]


class EncodedFanout:
    """Owns the task reading one source, the single encoder and its thread (created on
    the first frame; none for a pre-encoded source), the keyframe limiter shared by all
    viewers, and the viewer tracks. Frames read while nobody watches are not encoded.
    """

    mime_type = ""
    time_base: fractions.Fraction = VIDEO_TIME_BASE
    viewer_class: type[ViewerTrack] = ViewerVideoTrack

    def __init__(
        self,
        source: Source,
        new_encoder: Callable[[], PacketEncoder],
        queue_size: int,
        keyframe_min_interval: float,
        adapt_bitrate: bool,
    ) -> None:
        self.source = source
        self.queue_size = queue_size
        self.adapt_bitrate = adapt_bitrate
        self.encoder: PacketEncoder | None = None
        self._new_encoder = new_encoder
        self._executor: ThreadPoolExecutor | None = None
        self._limiter = KeyframeLimiter(self._forward_keyframe_request, keyframe_min_interval)
        self._viewers: set[ViewerTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._names = 0
        self.frames_in = 0
        self.frames_idle = 0
        self.packets_out = 0
        self.keyframes_out = 0
        self.encoders_created = 0
        self.keyframe_requests: dict[str, int] = {}

    @property
    def viewers(self) -> frozenset[ViewerTrack]:
        return frozenset(self._viewers)

    def start(self) -> None:
        """Start reading the source (the first viewer does it too)."""
        if self._closed:
            raise RuntimeError("fan-out is closed")
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"{self.mime_type} fan-out")

    @property
    def kind(self) -> str:
        return self.viewer_class.kind

    def subscribe(self, name: str | None = None) -> ViewerTrack:
        """A new viewer track. A video viewer starts at the next keyframe, asked for now."""
        self.start()
        self._names += 1
        viewer = self.viewer_class(
            name or f"{self.kind}-viewer-{self._names}",
            self.queue_size,
            on_overflow=lambda: self.request_keyframe("overflow"),
            on_stop=self._viewers.discard,
        )
        self._viewers.add(viewer)
        if viewer.gated:
            self.request_keyframe("subscribe")
        return viewer

    def add_to(self, pc: RTCPeerConnection, name: str | None = None) -> ViewerTrack:
        """Subscribe a viewer and send it on ``pc`` negotiating only this fan-out's codec,
        whether ``pc`` is about to offer or is answering a remote offer."""
        viewer = self.subscribe(name)
        if pc.remoteDescription is None:
            transceiver = pc.addTransceiver(viewer, direction="sendonly")
        else:  # answering: reuse the transceiver the offer created
            sender = pc.addTrack(viewer)
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
        prefer_codec(transceiver, self.mime_type)
        self.attach_sender(viewer, transceiver.sender)
        return viewer

    def attach_sender(self, viewer: ViewerTrack, sender: RTCRtpSender) -> None:
        """Route the viewer's PLI/FIR to the encoder and its REMB to the bitrate control."""
        viewer.sender_hook = hook_sender(
            sender,
            on_keyframe_request=lambda: self.request_keyframe("pli"),
            on_remb=lambda _bitrate: self._adapt_bitrate(),
        )

    def request_keyframe(self, reason: str = "api") -> bool:
        """Ask for a keyframe (rate-limited); True if it went to the encoder at once."""
        self.keyframe_requests[reason] = self.keyframe_requests.get(reason, 0) + 1
        return self._limiter.request()

    @property
    def frames_encoded(self) -> int:
        return self.encoder.frames_encoded if self.encoder else 0

    def stats(self) -> FanoutStats:
        encoded, enc = self.frames_encoded, self.encoder
        return FanoutStats(
            frames_in=self.frames_in,
            frames_idle=self.frames_idle,
            frames_encoded=encoded,
            packets_out=self.packets_out,
            keyframes_out=self.keyframes_out,
            encoders_created=self.encoders_created,
            encode_ms_mean=1000 * enc.encode_seconds / encoded if enc and encoded else 0.0,
            keyframe_requests=dict(self.keyframe_requests),
            keyframes_forwarded=self._limiter.forwarded,
            viewers=tuple(sorted((v.stats() for v in self._viewers), key=lambda s: s.name)),
        )

    async def close(self) -> None:
        """Stop reading, end every viewer and release the encoder and its thread."""
        self._closed = True
        self._limiter.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for viewer in list(self._viewers):
            viewer.end()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self.encoder is not None:
            self.encoder.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _forward_keyframe_request(self) -> None:
        if self.encoder is not None:
            self.encoder.request_keyframe()
        elif isinstance(self.source, KeyframeSource):
            self.source.request_keyframe()

    def _adapt_bitrate(self) -> None:
        hooks = [v.sender_hook for v in self._viewers if v.sender_hook is not None]
        estimates = [h.remb_bitrate for h in hooks if h.remb_bitrate]
        if not self.adapt_bitrate or not estimates:
            return
        if self.encoder is not None:
            self.encoder.set_bitrate(min(estimates))
        elif isinstance(self.source, BitrateSource):
            self.source.set_bitrate(min(estimates))

    async def _run(self) -> None:
        try:
            while True:
                if isinstance(self.source, MediaStreamTrack):
                    item = await self.source.recv()
                else:
                    item = await anext(self.source)
                self.frames_in += 1
                if not self._viewers:
                    self.frames_idle += 1
                elif isinstance(item, av.Packet):
                    self._publish(self._stamped(item))
                else:
                    for packet in await self._encode(item):
                        self._publish(packet)
        except (MediaStreamError, StopAsyncIteration):
            logger.info("%s source ended", self.mime_type)
        except Exception:
            logger.exception("%s fan-out stopped", self.mime_type)
        for viewer in list(self._viewers):
            viewer.end()

    async def _encode(self, frame: Any) -> list[av.Packet[Any]]:
        if self.encoder is None:
            self.encoder = self._new_encoder()
            self.encoders_created += 1
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="fanout-encoder")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encoder.encode, frame)

    def _stamped(self, packet: av.Packet[Any]) -> av.Packet[Any]:
        """A pre-encoded packet with the pts and time_base aiortc's packer needs."""
        if packet.time_base is None or packet.pts is None:
            packet.time_base = self.time_base
            packet.pts = int(time.monotonic() * self.time_base.denominator)
        return packet

    def _publish(self, packet: av.Packet[Any]) -> None:
        keyframe = not self.viewer_class.gated or is_keyframe(bytes(packet))
        self.packets_out += 1
        self.keyframes_out += keyframe
        for viewer in list(self._viewers):
            viewer.push(packet, keyframe)


class EncodedVideoFanout(EncodedFanout):
    """One H.264 stream for many viewers: see :class:`EncodedFanout` for what it owns.

    With ``adapt_bitrate`` the encoder (or a :class:`BitrateSource`) follows the lowest
    REMB estimate among the viewers.
    """

    mime_type = "video/H264"

    def __init__(
        self,
        source: Source,
        settings: H264Settings | None = None,
        queue_size: int = 15,
        keyframe_min_interval: float = 0.5,
        adapt_bitrate: bool = True,
    ) -> None:
        self.settings = settings or H264Settings()
        super().__init__(
            source,
            lambda: H264Encoder(self.settings),
            queue_size,
            keyframe_min_interval,
            adapt_bitrate,
        )


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


class EncodedAudioFanout(EncodedFanout):
    """One Opus stream for many viewers: see :class:`EncodedFanout` for what it owns.

    A source yielding Opus ``av.Packet`` passes through. Opus packets stand alone, so an
    overflowing viewer just loses its queued audio and nothing asks for keyframes.
    """

    mime_type = "audio/opus"
    time_base = OPUS_TIME_BASE
    viewer_class = ViewerAudioTrack

    def __init__(self, source: Source, bitrate: int = 64000, queue_size: int = 10) -> None:
        self.bitrate = bitrate
        super().__init__(source, lambda: OpusEncoder(self.bitrate), queue_size, 0.0, False)
