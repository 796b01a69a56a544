"""Encode once, send to many: one encoder per published stream, fanned out to every viewer.

A source is read by one task; each frame is encoded once (a source that already yields
``av.Packet`` — a hardware encoder, picamera2 — passes through untouched), packed into
RTP payloads once, and offered to every viewer (:mod:`edged.media.send.viewer`): a viewer
whose connection is up is sent to at once by its direct sender; the others queue it in
a bounded queue for aiortc's sender task. A video viewer whose queue overflows is
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
from typing import Any, Self

import av
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..aiortc.codec_choice import prefer_codec
from ..aiortc.direct_sender import RTP_HISTORY_SIZE, DirectSender
from ..aiortc.packers import packer_for, spare_audio_encoder
from ..aiortc.sender_hook import hook_sender
from ..encoders.base import PacketEncoder
from ..encoders.libx264 import H264Encoder, H264Settings
from ..encoders.opus import OPUS_TIME_BASE, OpusEncoder
from ..h264 import (
    NEGOTIATED_PROFILE_LEVEL,
    VIDEO_TIME_BASE,
    covered_by_negotiated,
    is_keyframe,
    sps_profile_level,
)
from ..sources.base import SourceTrack
from .keyframes import KeyframeLimiter
from .rtp_frames import FramePacker
from .viewer import ViewerAudioTrack, ViewerStats, ViewerTrack, ViewerVideoTrack

logger = logging.getLogger(__name__)

Source = MediaStreamTrack | AsyncIterator[Any]
"""A track yielding frames (encoded here) or ``av.Packet`` (passed through), or an async
iterator of ``av.Packet``."""


@dataclass(frozen=True)
class FanoutStats:
    """A fan-out's counters; ``encoders_created`` is 1 with a frame source, 0 in pass-through."""

    frames_in: int
    frames_idle: int
    frames_encoded: int
    frames_packed: int
    packets_out: int
    keyframes_out: int
    encoders_created: int
    encode_ms_mean: float
    keyframe_requests: dict[str, int]
    keyframes_forwarded: int
    viewers: tuple[ViewerStats, ...]
    remb_bitrate: int | None = None
    """The bitrate the viewers' REMB last set (bits/s, as the encoder took it); None
    until a REMB arrived (the configured bitrate holds)."""


class EncodedFanout:
    """Owns the task reading one source, the single encoder and its thread (created on
    the first frame; none for a pre-encoded source), the keyframe limiter shared by all
    viewers, the viewer tracks, and the packer that splits each access unit into RTP
    payloads once for every viewer sent to directly. Frames read while nobody watches
    are not encoded.

    With ``direct_send`` (the default) a viewer added to a peer connection is sent to by
    a :class:`~edged.media.aiortc.direct_sender.DirectSender` once its connection is up: the
    shared payloads get that viewer's RTP header, SRTP and go to its socket right here,
    instead of through a queue, a task and aiortc's packing for every viewer.
    """

    mime_type = ""
    time_base: fractions.Fraction = VIDEO_TIME_BASE
    viewer_class: type[ViewerTrack] = ViewerVideoTrack
    is_keyframe: Callable[[bytes], bool] = staticmethod(is_keyframe)
    """Whether a viewer may start at an encoded frame (H.264: an IDR or an SPS)."""

    def __init__(
        self,
        source: Source,
        new_encoder: Callable[[], PacketEncoder],
        queue_size: int,
        keyframe_min_interval: float,
        adapt_bitrate: bool,
        direct_send: bool = True,
    ) -> None:
        self.source = source
        self.queue_size = queue_size
        self.adapt_bitrate = adapt_bitrate
        self.remb_bitrate: int | None = None  # set by the viewers' REMB (see FanoutStats)
        self.direct_send = direct_send
        self._packer: FramePacker | None = None
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
        self.taps: list[Callable[[Any], None]] = []
        """Given every item the source yields, viewers or not (the VP8 fan-out's input)."""

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
            open_direct=self._open_direct,
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
        spare_audio_encoder(sender)
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
            frames_packed=self._packer.frames_packed if self._packer else 0,
            packets_out=self.packets_out,
            keyframes_out=self.keyframes_out,
            encoders_created=self.encoders_created,
            encode_ms_mean=1000 * enc.encode_seconds / encoded if enc and encoded else 0.0,
            keyframe_requests=dict(self.keyframe_requests),
            keyframes_forwarded=self._limiter.forwarded,
            viewers=tuple(sorted((v.stats() for v in self._viewers), key=lambda s: s.name)),
            remb_bitrate=self.remb_bitrate,
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
        elif isinstance(self.source, SourceTrack):  # one that encodes makes an IDR
            self.source.request_keyframe()

    def _adapt_bitrate(self) -> None:
        hooks = [v.sender_hook for v in self._viewers if v.sender_hook is not None]
        estimates = [h.remb_bitrate for h in hooks if h.remb_bitrate]
        if not self.adapt_bitrate or not estimates:
            return
        if self.encoder is not None:
            self.remb_bitrate = self.encoder.set_bitrate(min(estimates))
        elif isinstance(self.source, SourceTrack):  # one that encodes retargets it
            self.remb_bitrate = self.source.set_bitrate(min(estimates))

    async def _run(self) -> None:
        try:
            while True:
                if isinstance(self.source, MediaStreamTrack):
                    item = await self.source.recv()
                else:
                    item = await anext(self.source)
                self.frames_in += 1
                for tap in self.taps:
                    tap(item)
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
        keyframe = True
        if self.viewer_class.gated:
            data = bytes(packet)  # once: the keyframe test and the SPS check both read it
            keyframe = self.is_keyframe(data)
            if keyframe:
                self._on_keyframe(data)
        self.packets_out += 1
        self.keyframes_out += keyframe
        viewers = list(self._viewers)
        frame = None
        if self.direct_send and any(v.sender_hook is not None for v in viewers):
            try:
                frame = self._frame_packer().pack(packet)  # once, for every viewer
            except Exception:  # aiortc's packer would fail on it in every viewer's task
                logger.exception("%s: an access unit cannot be packed into RTP", self.mime_type)
                return
        for viewer in viewers:
            viewer.push(packet, keyframe, frame)

    def _on_keyframe(self, data: bytes) -> None:
        """A keyframe (its bytes) goes out (what the H.264 fan-out checks against the SDP)."""

    def _frame_packer(self) -> FramePacker:
        if self._packer is None:
            self._packer = FramePacker(packer_for(self.mime_type), RTP_HISTORY_SIZE)
        return self._packer

    def _open_direct(self, viewer: ViewerTrack) -> DirectSender | None:
        if not self.direct_send or viewer.sender_hook is None:
            return None
        return DirectSender.open(viewer.sender_hook, self.mime_type, self._frame_packer().find)


class EncodedVideoFanout(EncodedFanout):
    """One H.264 stream for many viewers: see :class:`EncodedFanout` for what it owns.

    With ``adapt_bitrate`` the encoder (or a source with ``bitrate_control``) follows the lowest
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
        direct_send: bool = True,
    ) -> None:
        self.settings = settings or H264Settings()
        self.profile_levels: set[str] = set()
        """The profile-level-ids of the SPS sent (``42e01f`` is what viewers negotiate)."""
        super().__init__(
            source,
            lambda: H264Encoder(self.settings),
            queue_size,
            keyframe_min_interval,
            adapt_bitrate,
            direct_send,
        )

    def _on_keyframe(self, data: bytes) -> None:
        profile_level = sps_profile_level(data)
        if profile_level is None or profile_level in self.profile_levels:
            return
        self.profile_levels.add(profile_level)
        if not covered_by_negotiated(profile_level):  # a source passed through unchecked
            logger.warning(
                "video goes out as H.264 %s, beyond the %s viewers negotiated: "
                "a viewer may show no picture",
                profile_level,
                NEGOTIATED_PROFILE_LEVEL,
            )


class EncodedAudioFanout(EncodedFanout):
    """One Opus stream for many viewers: see :class:`EncodedFanout` for what it owns.

    A source yielding Opus ``av.Packet`` passes through. Opus packets stand alone, so an
    overflowing viewer just loses its queued audio and nothing asks for keyframes.
    """

    mime_type = "audio/opus"
    time_base = OPUS_TIME_BASE
    viewer_class = ViewerAudioTrack

    def __init__(
        self,
        source: Source,
        bitrate: int = 64000,
        queue_size: int = 10,
        direct_send: bool = True,
    ) -> None:
        self.bitrate = bitrate
        super().__init__(
            source, lambda: OpusEncoder(self.bitrate), queue_size, 0.0, False, direct_send
        )
