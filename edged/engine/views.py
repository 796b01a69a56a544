"""What an application may read of the engine: frozen records, taken when asked.

:class:`~edged.engine.engine.Engine` hands these out (``engine.room_info``,
``engine.streams``, ``engine.publishers``, ``engine.players``,
``engine.snapshot_source()``) so that no caller reaches into the room session, a
publisher's fan-out or a player's peer connection. A record is a copy: it never changes
after it was made, and holding one keeps nothing alive but a reference to a frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..media.sources.base import Capabilities
from ..model import PlayerState, PublisherState, RoomState, User
from ..model import WhipTargetInfo as TargetInfo


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """The room the engine is logged into (or was, until ``logout_room``)."""

    room_id: str
    user: User
    state: RoomState
    token_expires_at: float | None


@dataclass(frozen=True, slots=True)
class VideoSendCounts:
    """The published video since it started: what was captured, encoded and sent.

    ``frames_sent`` counts the frames that went to the viewers (idle frames, with no
    viewer, are not sent); ``black_frames_sent`` the black pictures a muted pass-through
    source sent; ``encoders_created`` is 1 for a source of raw frames, 0 when the source's
    own H.264 passes through. ``bitrate`` is what the viewers' (or the SFU's) REMB last
    set the encoder to, in bits/s; None until one did. ``vp8_*``: the second encode for
    viewers without H.264 (edged.media.send.vp8): at most one encoder, its frames, and
    how many viewers it serves.
    """

    frames_captured: int
    frames_encoded: int
    frames_sent: int
    packets_sent: int
    keyframes_sent: int
    black_frames_sent: int
    encoders_created: int
    bitrate: int | None = None
    vp8_encoders_created: int = 0
    vp8_frames_encoded: int = 0
    vp8_viewers: int = 0
    profile_levels: tuple[str, ...] = ()
    """The H.264 profile-level-ids its SPS said (viewers negotiate ``42e01f``)."""


@dataclass(frozen=True, slots=True)
class ViewerInfo:
    """One viewer of a published stream.

    ``addresses``: the viewer's own network addresses as its ICE candidates gave them,
    an mDNS ``.local`` name already resolved.
    """

    link_id: str
    user_id: str
    addresses: tuple[str, ...]
    relayed: bool = False  # the room's SFU, which relays the stream to its viewers


@dataclass(frozen=True, slots=True)
class PublisherInfo:
    """One of our published streams."""

    stream_id: str
    state: PublisherState
    error_code: int
    viewers: tuple[ViewerInfo, ...]
    capabilities: Capabilities  # what the video source does by itself (media.sources.base)
    video: VideoSendCounts | None  # None without video
    targets: tuple[TargetInfo, ...] = ()  # external WHIP endpoints it is sent to as well

    @property
    def viewer_count(self) -> int:
        return len(self.viewers)


@dataclass(frozen=True, slots=True)
class PlayerInfo:
    """One stream we play: its state and what arrived so far."""

    stream_id: str
    state: PlayerState
    error_code: int
    video: bool  # False: audio only, the video declined
    video_frames: int
    audio_frames: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class SnapshotSource:
    """Where a still picture of our published video comes from: the latest captured
    ``frame`` (to be scaled and encoded), else the source's own JPEG maker
    (``capture_jpeg``, which may block: call it off the event loop)."""

    frame: Any
    capture_jpeg: Callable[[], bytes] | None
