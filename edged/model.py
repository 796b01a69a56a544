"""The call model's enums and records: states, reasons, users, streams, quality.

The numbers of every enum are part of the product contract. This module imports
nothing of edged; everything else may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class RoomState(IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2


class RoomStateChangedReason(IntEnum):
    LOGINING = 0
    LOGINED = 1
    LOGIN_FAILED = 2
    RECONNECTING = 3
    RECONNECTED = 4
    RECONNECT_FAILED = 5
    KICK_OUT = 6
    LOGOUT = 7
    LOGOUT_FAILED = 8


class PublisherState(IntEnum):
    NO_PUBLISH = 0
    PUBLISH_REQUESTING = 1
    PUBLISHING = 2


class PlayerState(IntEnum):
    NO_PLAY = 0
    PLAY_REQUESTING = 1
    PLAYING = 2


class UpdateType(IntEnum):
    ADD = 0
    DELETE = 1


class StreamDeleteReason(StrEnum):
    """Why a stream left the room (carried by a stream DELETE)."""

    STOPPED = "stopped"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    REPEATED_LOGIN = "repeated_login"
    KICKED = "kicked"
    DISCONNECTED = "disconnected"


SFU_UNAVAILABLE = "sfu_unavailable"
"""The ``link_closed`` reason of a relayed link whose SFU could not be reached or was lost."""
SFU_REFUSED = "sfu_refused"
"""The ``link_closed`` reason of a relayed link the SFU refused (a wrong secret, full)."""
NO_RELAYED_PLAYER = "no_relayed_player"
"""The ``link_closed`` reason of a publisher's link to the SFU once no viewer is relayed."""


class QualityLevel(IntEnum):
    EXCELLENT = 0
    GOOD = 1
    MEDIUM = 2
    BAD = 3
    DIE = 4
    UNKNOWN = 5


class Scenario(StrEnum):
    """What the engine is used for; picks default video and audio settings."""

    CALL = "call"
    BROADCAST = "broadcast"
    SURVEILLANCE = "surveillance"


@dataclass(frozen=True, slots=True)
class User:
    """A user in a room: ``user_id`` is unique within an app."""

    user_id: str
    user_name: str = ""


@dataclass(frozen=True, slots=True)
class Stream:
    """A published stream: ``stream_id`` is unique within an app."""

    stream_id: str
    user: User
    extra_info: str = ""
    has_video: bool = True
    has_audio: bool = True


class WhipTargetState(StrEnum):
    """Where a stream's external WHIP endpoint stands (edged.engine.whip_out)."""

    CONNECTING = "connecting"
    SENDING = "sending"
    RETRYING = "retrying"


@dataclass(frozen=True, slots=True)
class WhipTargetInfo:
    """One external WHIP endpoint of a stream: its state, last error (empty: none), attempts."""

    url: str
    state: WhipTargetState
    error: str
    attempts: int


@dataclass(slots=True)
class PublishQuality:
    """A publisher's quality report (totals over viewers, worst viewer's rtt and loss)."""

    capture_fps: float = 0.0
    encode_fps: float = 0.0
    send_fps: float = 0.0
    video_kbps: float = 0.0
    audio_kbps: float = 0.0
    rtt_ms: float | None = None
    packet_loss_rate: float = 0.0
    level: QualityLevel = QualityLevel.UNKNOWN
    hardware_encode: bool = False
    codec: str = ""
    total_bytes_sent: int = 0
    width: int = 0
    height: int = 0
    viewers: int = 0
    targets: tuple[WhipTargetInfo, ...] = ()  # external WHIP endpoints it is also sent to


@dataclass(slots=True)
class PlayQuality:
    """A player's quality report for one played stream."""

    recv_fps: float = 0.0
    decode_fps: float = 0.0
    video_kbps: float = 0.0
    audio_kbps: float = 0.0
    rtt_ms: float | None = None
    packet_loss_rate: float = 0.0
    delay_ms: float | None = None
    level: QualityLevel = QualityLevel.UNKNOWN
    codec: str = ""
    total_bytes_received: int = 0
    width: int = 0
    height: int = 0
    extra: dict[str, float] = field(default_factory=dict)
