"""A played stream: the link to its publisher, the receiving peer connection, the sink.

PLAYING means media arrives (the first frame was received), not merely that signaling
succeeded. A player whose stream does not exist (yet) waits in PLAY_REQUESTING and
starts when the stream appears; when the stream ends it goes back to waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import av
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..media.sinks.frame_queue import FrameQueueTrack
from ..model import SFU_REFUSED, SFU_UNAVAILABLE, PlayerState
from ..protocol import IceCandidate, SessionDescription, Signal
from .config import EngineProfile
from .events import (
    Emit,
    PlayerRecvAudioFirstFrame,
    PlayerRecvVideoFirstFrame,
    PlayerStateUpdate,
    PlayerVideoSizeChanged,
)
from .peer import (
    add_remote_candidate,
    connection_ended,
    local_description,
    make_peer_connection,
    relay_missing,
    set_remote_description,
    watch_ice,
)
from .stream_state import StreamState
from .views import PlayerInfo

log = logging.getLogger("edged.engine")

RELAY_LOSS_CODES = {
    SFU_UNAVAILABLE: ErrorCode.RELAY_UNAVAILABLE,
    SFU_REFUSED: ErrorCode.RELAY_REFUSED,
}
"""The code a player reports while it plays again after its relayed link closed so."""

# Refusals after which waiting cannot help: the player stops with the code.
FINAL_REFUSALS = {ErrorCode.VIEWER_LIMIT_REACHED, ErrorCode.PLAYER_COUNT_EXCEEDED}


class MediaSink(Protocol):
    """Where a player's decoded frames go (speaker, recorder, analysis, display)."""

    def attach(self, track: MediaStreamTrack) -> None:
        """A received track (video or audio) starts; read frames from it."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class PlayerCounters:
    """What the player counted itself (getStats has no frame counts)."""

    video_frames: int = 0
    audio_frames: int = 0
    width: int = 0
    height: int = 0
    first_video_at: float | None = None
    first_audio_at: float | None = None
    requested_at: float | None = None


class Player(StreamState[PlayerState]):
    """Owns one played stream's state, link, peer connection, readers and sink."""

    def __init__(
        self,
        stream_id: str,
        sink: MediaSink | None,
        profile: EngineProfile,
        request_play: Callable[[str], Awaitable[str]],
        release_link: Callable[[str], Awaitable[None]],
        send_signal: Callable[[Signal], Awaitable[None]],
        stream_exists: Callable[[str], bool],
        emit: Emit,
        *,
        video: bool = True,
        ice_servers: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._ice_servers = ice_servers or (lambda: profile.ice_servers)
        self.video = video
        self.sink = sink
        self.profile = profile
        self.state = PlayerState.NO_PLAY
        self.error_code = 0
        self.link_id: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.counters = PlayerCounters()
        self._request_play = request_play
        self._release_link = release_link
        self._send_signal = send_signal
        self._stream_exists = stream_exists
        self._emit = emit
        self._readers: set[asyncio.Task[None]] = set()
        self._requesting: asyncio.Task[None] | None = None
        self._stopped = False
        self._interrupted = False
        """Signaling is down: frames that still arrive do not make it PLAYING again."""

    def _state_event(self, state: PlayerState, error_code: int) -> PlayerStateUpdate:
        return PlayerStateUpdate(self.stream_id, state, error_code, {})

    @property
    def receiving(self) -> bool:
        return (
            self.pc is not None
            and self.pc.connectionState == "connected"
            and (self.counters.video_frames > 0 or self.counters.audio_frames > 0)
        )

    def info(self) -> PlayerInfo:
        """The played stream as the application sees it now (:mod:`edged.engine.views`)."""
        c = self.counters
        return PlayerInfo(
            self.stream_id,
            self.state,
            self.error_code,
            self.video,
            c.video_frames,
            c.audio_frames,
            c.width,
            c.height,
        )

    async def packets_received(self) -> dict[str, int]:
        """RTP packets received on the current link so far, by kind (from getStats)."""
        if self.pc is None:
            return {}
        counts: dict[str, int] = {}
        for s in (await self.pc.getStats()).values():
            if s.type == "inbound-rtp":
                counts[s.kind] = counts.get(s.kind, 0) + s.packetsReceived
        return counts

    # ---- requesting ------------------------------------------------------------------

    def start(self) -> None:
        self._stopped = False
        self.counters.requested_at = time.monotonic()
        self.set_state(PlayerState.PLAY_REQUESTING)
        self.request_if_possible()

    def request_if_possible(self, delay: float = 0.0) -> None:
        """Ask for a link if the stream exists and none is open or being asked for."""
        if self._stopped or self.link_id is not None or not self._stream_exists(self.stream_id):
            return
        if self._requesting is None or self._requesting.done():
            self._requesting = asyncio.create_task(self._request(delay))

    async def _request(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            link_id = await self._request_play(self.stream_id)
        except EdgedError as exc:
            if exc.code == ErrorCode.ALREADY_PLAYING:
                return
            if exc.code in FINAL_REFUSALS:
                self._stopped = True
                self.set_state(PlayerState.NO_PLAY, int(exc.code))
            else:
                log_event(
                    log, logging.INFO, "play_waiting", stream=self.stream_id, code=int(exc.code)
                )
            return
        if not self._stopped:
            self.link_id = link_id

    # ---- the link ------------------------------------------------------------------

    async def on_signal(
        self, link_id: str, description: SessionDescription | None, candidate: IceCandidate | None
    ) -> None:
        if self._stopped:
            return
        if self.link_id is None:
            self.link_id = link_id  # the offer overtook the play reply
        if link_id != self.link_id:
            return
        if description is not None and description.type == "offer":
            await self._answer(link_id, description)
        if candidate is not None and self.pc is not None:
            await add_remote_candidate(self.pc, candidate)

    async def _answer(self, link_id: str, offer: SessionDescription) -> None:
        await self._close_pc()
        ice_servers = self._ice_servers()
        pc = self.pc = make_peer_connection(ice_servers)
        no_relay = False  # TURN configured, and it gave no relay candidate

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and not self.video:
                return  # declined in the answer: nothing will arrive
            task = asyncio.create_task(self._read(track))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

        ice_failed: Callable[[], bool] | None = None  # set once the transceivers exist

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if pc is self.pc and connection_ended(pc, ice_failed):
                log_event(log, logging.INFO, "play_connection_failed", stream=self.stream_id)
                code = ErrorCode.TURN_UNAVAILABLE if no_relay else 0
                await self.link_lost(rebuild=True, code=code)

        if not await set_remote_description(pc, offer):
            await self.link_lost(rebuild=True)
            return
        ice_failed = watch_ice(pc)
        if not self.video:  # decline it: the publisher then sends no video at all
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    transceiver.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
        if relay_missing(pc, ice_servers):
            no_relay = True
            log_event(log, logging.WARNING, "turn_unavailable", stream=self.stream_id)
        if pc is self.pc:
            await self._send_signal(
                Signal(link_id=link_id, stream_id=self.stream_id, description=local_description(pc))
            )

    async def _read(self, track: MediaStreamTrack) -> None:
        tap = FrameQueueTrack(track.kind) if self.sink is not None else None
        if tap is not None and self.sink is not None:
            self.sink.attach(tap)
        try:
            while True:
                frame = await track.recv()
                self._count(frame)
                if tap is not None:
                    tap.put(frame)
        except MediaStreamError:
            pass
        finally:
            if tap is not None:
                tap.stop()

    def _count(self, frame: Any) -> None:
        c = self.counters
        if self.state != PlayerState.PLAYING and not self._stopped and not self._interrupted:
            self.set_state(PlayerState.PLAYING)
        if isinstance(frame, av.VideoFrame):
            c.video_frames += 1
            if c.first_video_at is None:
                c.first_video_at = time.monotonic()
                self._emit(PlayerRecvVideoFirstFrame(self.stream_id))
            if (frame.width, frame.height) != (c.width, c.height):
                c.width, c.height = frame.width, frame.height
                self._emit(PlayerVideoSizeChanged(self.stream_id, c.width, c.height))
        else:
            c.audio_frames += 1
            if c.first_audio_at is None:
                c.first_audio_at = time.monotonic()
                self._emit(PlayerRecvAudioFirstFrame(self.stream_id))

    async def link_lost(self, rebuild: bool = False, code: int = 0) -> None:
        """The link ended (stream gone, publisher left, connection failed, the SFU lost:
        ``code``): wait again."""
        link_id, self.link_id = self.link_id, None
        await self._close_pc()
        if self._stopped:
            return
        self.set_state(PlayerState.PLAY_REQUESTING, code)
        self._reset_first_frames()
        if rebuild and link_id is not None:
            log_event(log, logging.INFO, "play_rebuild", stream=self.stream_id)
            with contextlib.suppress(EdgedError):
                await self._release_link(self.stream_id)
        self.request_if_possible(delay=self.profile.timers.play_retry if rebuild else 0.0)

    def _reset_first_frames(self) -> None:
        self.counters.first_video_at = self.counters.first_audio_at = None

    def interrupted(self) -> None:
        """Signaling is down: report REQUESTING (until it is back, however the media
        flows), keep the media while it flows."""
        self._interrupted = True
        if not self._stopped:
            self.set_state(PlayerState.PLAY_REQUESTING)

    def resumed(self) -> None:
        self._interrupted = False
        if not self._stopped and self.receiving:
            self.set_state(PlayerState.PLAYING)

    async def session_lost(self) -> None:
        """The server forgot our session (and so our link): start over after re-login."""
        self._interrupted = False
        self.link_id = None
        await self._close_pc()
        self._reset_first_frames()
        if not self._stopped:
            self.set_state(PlayerState.PLAY_REQUESTING)

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()

    async def stop(self, error_code: int = 0) -> None:
        """Stop playing for good (the caller tells the server)."""
        self._stopped = True
        if self._requesting is not None:
            self._requesting.cancel()
        self.link_id = None
        await self._close_pc()
        if self.sink is not None:
            await self.sink.close()
        self.set_state(PlayerState.NO_PLAY, error_code)
