"""A published stream: its capture, one encoder, and a peer connection per viewer.

The flow of the media: source track -> :class:`SourceTap` (counts, mute) ->
:class:`EncodedVideoFanout` (encodes once) -> one viewer track per link -> that link's
RTCPeerConnection. Audio takes the same path through :class:`EncodedAudioFanout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from ..backoff import Backoff
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..media.aiortc.codec_choice import negotiable
from ..media.encoders.libx264 import H264Settings
from ..media.send.fanout import EncodedAudioFanout, EncodedFanout, EncodedVideoFanout
from ..media.send.vp8 import Vp8Fanout
from ..media.sources.base import NOTHING
from ..media.sources.tap import SourceTap
from ..model import NO_RELAYED_PLAYER, SFU_REFUSED, SFU_UNAVAILABLE, PublisherState
from ..protocol import IceCandidate, SessionDescription, Signal, UserInfo
from .config import AudioConfig, EngineProfile, PublishConfig, VideoConfig
from .events import Emit, PublisherCapturedVideoFirstFrame, PublisherStateUpdate
from .peer import (
    add_remote_candidate,
    connection_ended,
    local_description,
    make_peer_connection,
    remote_host_addresses,
    set_remote_description,
    watch_ice,
)
from .player import MediaSink
from .rejected import accept_rejected
from .stream_state import StreamState
from .talkback import TalkbackSinks, receive_talkback
from .views import PublisherInfo, SnapshotSource, VideoSendCounts, ViewerInfo
from .whip_out import WhipSender

log = logging.getLogger("edged.engine")

SendSignal = Callable[[Signal], Awaitable[None]]


@dataclass(eq=False)
class ViewerLink:
    """One viewer of the stream (or the room's SFU): its link id, user and peer connection."""

    link_id: str
    user_id: str
    pc: RTCPeerConnection
    tracks: list[Any] = field(default_factory=list)
    relayed: bool = False
    talkback: MediaSink | None = None
    """Where the audio the viewer sends goes (edged.engine.talkback), if anywhere."""


class Publisher(StreamState[PublisherState]):
    """Owns one published stream's sources, fan-outs, viewer links and state."""

    def __init__(
        self,
        stream_id: str,
        config: PublishConfig,
        profile: EngineProfile,
        video: VideoConfig,
        audio: AudioConfig,
        send_signal: SendSignal,
        emit: Emit,
        ice_servers: Callable[[], list[dict[str, Any]]] | None = None,
        talkback: TalkbackSinks | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._talkback = talkback
        self._ice_servers = ice_servers or (lambda: profile.ice_servers)
        self.config = config
        self.profile = profile
        self.video_config = video
        self.audio_config = audio
        self.state = PublisherState.NO_PUBLISH
        self.error_code = 0
        self._send_signal = send_signal
        self._emit = emit
        self.video_tap: SourceTap | None = None
        self.audio_tap: SourceTap | None = None
        self.video_fanout: EncodedVideoFanout | None = None
        self.audio_fanout: EncodedAudioFanout | None = None
        self.vp8_fanout: Vp8Fanout | None = None  # made for the first viewer without H.264
        self.links: dict[str, ViewerLink] = {}
        self.targets: list[WhipSender] = []
        self._first_frame = asyncio.Event()

    def _state_event(self, state: PublisherState, error_code: int) -> PublisherStateUpdate:
        return PublisherStateUpdate(self.stream_id, state, error_code, {})

    # ---- capture -------------------------------------------------------------------

    def start_capture(self) -> None:
        """Open the sources and start encoding (once, whoever watches)."""
        if self.config.video and self.video_fanout is None:
            cfg = self.video_config
            self.video_tap = SourceTap(self.profile.video_source(cfg), self._on_first_frame)
            settings = H264Settings.for_video(cfg)
            self.video_fanout = EncodedVideoFanout(
                self.video_tap,
                settings,
                keyframe_min_interval=self.profile.timers.keyframe_min_interval,
            )
            self.video_fanout.start()
        if self.config.audio and self.audio_fanout is None:
            self.audio_tap = SourceTap(self.profile.audio_source(self.audio_config))
            self.audio_fanout = EncodedAudioFanout(
                self.audio_tap, bitrate=self.audio_config.bitrate
            )
            self.audio_fanout.start()
        for tap in (self.video_tap, self.audio_tap):
            if tap is not None:
                tap.report_device_errors(self._on_device_error)
        if not self.config.video:
            self._first_frame.set()
        if not self.targets:
            timers = self.profile.timers
            for target in self.config.targets:
                backoff = Backoff(timers.retry_min, max(timers.retry_min, timers.retry_max))
                sender = WhipSender(target, self._target_tracks, self._ice_servers, backoff)
                self.targets.append(sender)
                sender.start()

    def _target_tracks(self, pc: RTCPeerConnection, name: str) -> list[Any]:
        """Feed an external WHIP endpoint's connection from the same encode as viewers."""
        return [f.add_to(pc, name=name) for f in (self.video_fanout, self.audio_fanout) if f]

    def _on_device_error(self, code: int) -> None:
        """A camera or microphone failed (code) or works again (0); it retries by itself."""
        if self.state == PublisherState.NO_PUBLISH:
            return
        if code:
            self.set_state(PublisherState.PUBLISH_REQUESTING, code)
        else:
            self.set_state(PublisherState.PUBLISHING)

    def _on_first_frame(self) -> None:
        self._first_frame.set()
        self._emit(PublisherCapturedVideoFirstFrame(self.stream_id))

    async def wait_first_frame(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._first_frame.wait(), timeout)
        except TimeoutError:
            raise EdgedError(ErrorCode.CAMERA_LOST, "the video source produced no frame") from None

    def mute(self, kind: str, muted: bool) -> None:
        tap = self.video_tap if kind == "video" else self.audio_tap
        if tap is not None:
            tap.muted = muted  # a pass-through source is asked for a keyframe by its tap
        fanout = self.video_fanout
        if kind == "video" and not muted and fanout is not None and fanout.encoder is not None:
            fanout.request_keyframe("unmute")

    def set_bitrate(self, bitrate: int) -> None:
        fanout = self.video_fanout
        if fanout is not None and fanout.encoder is not None:
            fanout.encoder.set_bitrate(bitrate)
        elif self.video_tap is not None:  # a source that encodes by itself
            self.video_tap.set_bitrate(bitrate)

    # ---- viewers -------------------------------------------------------------------

    async def open_link(
        self,
        link_id: str,
        user: UserInfo,
        relayed: bool = False,
        offer: SessionDescription | None = None,
    ) -> None:
        """A viewer (or the room's SFU) plays the stream: offer it our media on a new peer
        connection, or answer the ``offer`` of a viewer that makes its own (WHEP), taking
        the audio it sends if a talkback sink wants it (edged.engine.talkback)."""
        pc = make_peer_connection(self._ice_servers())
        link = ViewerLink(link_id, user.user_id, pc, relayed=relayed)
        self.links[link_id] = link

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if relayed and pc.connectionState == "connected":
                self._relay_back()
            if self.links.get(link_id) is link and connection_ended(pc, ice_failed):
                log_event(log, logging.INFO, "viewer_failed", stream=self.stream_id, link=link_id)
                await self.close_link(link_id)

        if offer is not None and not await set_remote_description(pc, offer):
            await self.close_link(link_id)
            return
        # An offer names the kinds it wants (a WHEP player may ask for video only). Ours
        # puts audio first: its first section is the BUNDLE group's tag, and a viewer that
        # rejects the video (stock Firefox: no H.264) must keep the transport with it, or
        # Firefox never gathers and the sound is lost too.
        offered = {t.kind for t in pc.getTransceivers()} if offer is not None else None
        for kind, fanout in (("audio", self.audio_fanout), ("video", self._video_for(pc))):
            if fanout is not None and (offered is None or kind in offered):
                link.tracks.append(fanout.add_to(pc, name=link_id))
        if offer is not None:  # what the viewer sends: its microphone, or declined
            link.talkback = receive_talkback(pc, user.user_id, self._talkback)
            if link.talkback is not None:
                log_event(log, logging.INFO, "viewer_talkback", stream=self.stream_id, link=link_id)
        ice_failed = watch_ice(pc)
        await pc.setLocalDescription(await (pc.createAnswer() if offer else pc.createOffer()))
        if link_id not in self.links:
            return  # closed while gathering
        await self._send_signal(
            Signal(link_id=link_id, stream_id=self.stream_id, description=local_description(pc))
        )

    async def on_signal(
        self, link_id: str, description: SessionDescription | None, candidate: IceCandidate | None
    ) -> None:
        link = self.links.get(link_id)
        if link is None:
            return
        if description is not None and description.type == "answer":
            description = self._accept_rejected(link, description)
        if (
            description is not None
            and description.type == "answer"
            and not await set_remote_description(link.pc, description)
        ):
            await self.close_link(link_id)  # that viewer's loss alone
            return
        if candidate is not None:
            await add_remote_candidate(link.pc, candidate)

    def _accept_rejected(self, link: ViewerLink, answer: SessionDescription) -> SessionDescription:
        """The viewer's answer with the sections it rejected (a browser without H.264)
        made inactive, so that it still gets the others (edged.engine.rejected)."""
        offer = link.pc.localDescription
        accepted = accept_rejected(answer.sdp, offer.sdp) if offer is not None else None
        if accepted is None or not accepted.rejected:
            return answer
        log_event(
            log,
            logging.WARNING,
            "viewer_rejected_media",
            stream=self.stream_id,
            link=link.link_id,
            kinds=",".join(accepted.rejected),
        )
        return answer.model_copy(update={"sdp": accepted.sdp})

    async def close_link(self, link_id: str, reason: str = "") -> None:
        """End a viewer's link (``reason``: the server's, when it closed it). Losing the
        link to the SFU makes the stream PUBLISH_REQUESTING until a link to it connects
        again, or no viewer is relayed any more."""
        link = self.links.pop(link_id, None)
        if link is None:
            return
        if link.relayed and reason in (SFU_UNAVAILABLE, SFU_REFUSED):
            if self.state == PublisherState.PUBLISHING:
                self.set_state(PublisherState.PUBLISH_REQUESTING, ErrorCode.PUBLISH_RELAY_LOST)
        elif link.relayed and reason == NO_RELAYED_PLAYER:
            self._relay_back()
        for track in link.tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await link.pc.close()
        if link.talkback is not None:
            await link.talkback.close()

    def _relay_back(self) -> None:
        if self.error_code == ErrorCode.PUBLISH_RELAY_LOST:
            self.set_state(PublisherState.PUBLISHING)

    @property
    def viewer_count(self) -> int:
        return len(self.links)

    # ---- what the application reads ------------------------------------------------

    def info(self) -> PublisherInfo:
        """The stream as the application sees it now (:mod:`edged.engine.views`)."""
        viewers = tuple(
            ViewerInfo(link.link_id, link.user_id, remote_host_addresses(link.pc), link.relayed)
            for link in self.links.values()
        )
        capabilities = self.video_tap.capabilities if self.video_tap is not None else NOTHING
        return PublisherInfo(
            self.stream_id,
            self.state,
            self.error_code,
            viewers,
            capabilities,
            self._video(),
            tuple(sender.info() for sender in self.targets),
        )

    def _video(self) -> VideoSendCounts | None:
        tap, fanout = self.video_tap, self.video_fanout
        if tap is None or fanout is None:
            return None
        stats = fanout.stats()
        vp8 = self.vp8_fanout.stats() if self.vp8_fanout is not None else None
        return VideoSendCounts(
            frames_captured=tap.frames,
            frames_encoded=stats.frames_encoded,
            frames_sent=stats.frames_in - stats.frames_idle,
            packets_sent=stats.packets_out,
            keyframes_sent=stats.keyframes_out,
            black_frames_sent=tap.packet_mute.black_sent,
            encoders_created=stats.encoders_created,
            bitrate=stats.remb_bitrate,
            vp8_encoders_created=vp8.encoders_created if vp8 else 0,
            vp8_frames_encoded=vp8.frames_encoded if vp8 else 0,
            vp8_viewers=len(vp8.viewers) if vp8 else 0,
            profile_levels=tuple(sorted(fanout.profile_levels)),
        )

    def snapshot_source(self) -> SnapshotSource | None:
        """The latest captured frame, else the source's own JPEG maker; None if neither."""
        tap = self.video_tap
        if tap is None:
            return None
        capture = tap.snapshot_jpeg if tap.capabilities.snapshot else None
        if tap.last_frame is None and capture is None:
            return None
        return SnapshotSource(tap.last_frame, capture)

    def _video_for(self, pc: RTCPeerConnection) -> EncodedFanout | None:
        """The fan-out a link's video comes from: H.264, unless the viewer made an offer
        without it but with VP8 (stock Firefox), served by one VP8 encode for all such."""
        fanout = self.video_fanout
        video = next((t for t in pc.getTransceivers() if t.kind == "video"), None)
        if fanout is None or video is None or pc.remoteDescription is None:
            return fanout
        if negotiable(video, fanout.mime_type) or not negotiable(video, Vp8Fanout.mime_type):
            return fanout
        if self.vp8_fanout is None:
            self.vp8_fanout = Vp8Fanout(fanout)
        return self.vp8_fanout

    async def close(self) -> None:
        """Close every link and release the sources and encoders."""
        for sender in self.targets:
            await sender.stop()
        self.targets.clear()
        for link_id in list(self.links):
            await self.close_link(link_id)
        for fanout in (self.vp8_fanout, self.video_fanout, self.audio_fanout):
            if fanout is not None:
                await fanout.close()
        for tap in (self.video_tap, self.audio_tap):
            if tap is not None:
                tap.stop()
        self.video_fanout = self.audio_fanout = self.vp8_fanout = None
        self.video_tap = self.audio_tap = None
