"""The daemon's view of the engine: the retained state snapshot and the event feed.

:class:`StateTracker` receives every engine event as its typed object. It keeps what the
MQTT ``state`` topic shows (room, users, streams, publisher, players), turns every event
into the JSON of the ``event`` topic (its name and fields, as the event class defines
them), and keeps the latest quality reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from typing import Any

from .. import __version__
from ..engine.events import (
    Event,
    EventHandler,
    PlayerQualityUpdate,
    PlayerStateUpdate,
    PublisherQualityUpdate,
    PublisherStateUpdate,
    RoomStateChanged,
    RoomStateUpdate,
    RoomStreamExtraInfoUpdate,
    RoomStreamUpdate,
    RoomUserUpdate,
)
from ..model import (
    PlayerState,
    PlayQuality,
    PublisherState,
    PublishQuality,
    RoomState,
    RoomStateChangedReason,
    Stream,
    UpdateType,
    User,
)

JsonDict = dict[str, Any]
QUALITY_EVENTS = (PublisherQualityUpdate, PlayerQualityUpdate)
"""Reported on the ``quality`` topic, never on the ``event`` topic."""
ROOM_ENDED = (
    RoomStateChangedReason.LOGOUT,
    RoomStateChangedReason.KICK_OUT,
    RoomStateChangedReason.RECONNECT_FAILED,
)
"""Reasons after which the room's users and streams are gone."""


def to_json(value: Any) -> Any:
    """Event fields as JSON: enums by name, records as objects."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, User):
        return {"user_id": value.user_id, "user_name": value.user_name}
    if isinstance(value, Stream):
        return {
            "stream_id": value.stream_id,
            "user_id": value.user.user_id,
            "user_name": value.user.user_name,
            "extra_info": value.extra_info,
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def event_json(event: Event) -> JsonDict:
    """The ``event`` topic's payload: ``{"event": NAME, ...fields}`` in field order."""
    return {"event": event.NAME, **to_json(event)}


class StateTracker(EventHandler):
    """Owns the state snapshot, the latest quality, and the event and change callbacks."""

    def __init__(
        self,
        device_id: str,
        on_change: Callable[[], None],
        publish_event: Callable[[JsonDict], None],
    ) -> None:
        self.device_id = device_id
        self._on_change = on_change
        self._publish_event = publish_event
        self.room_id = ""
        self.user_id = ""
        self.room_state = RoomState.DISCONNECTED
        self.reason = RoomStateChangedReason.LOGOUT
        self.room_error = 0
        self.users: dict[str, User] = {}
        self.streams: dict[str, Stream] = {}
        self.publishers: dict[str, tuple[PublisherState, int]] = {}
        self.players: dict[str, tuple[PlayerState, int]] = {}
        self.viewers: dict[str, int] = {}
        self.publish_quality: dict[str, PublishQuality] = {}
        self.play_quality: dict[str, PlayQuality] = {}
        self.audio: JsonDict = {}
        """The board's audio controls (:class:`edged.daemon.audio.DeviceAudio`)."""

    def on_event(self, event: Event) -> None:
        changed = self._apply(event)
        if not isinstance(event, QUALITY_EVENTS):
            self._publish_event(event_json(event))
        if changed:
            self._on_change()

    def _apply(self, event: Event) -> bool:
        """Fold one event into the snapshot; True when the ``state`` topic would change."""
        match event:
            case RoomStateChanged(reason=reason):
                self.reason = reason
                if reason in ROOM_ENDED:
                    self.users.clear()
                    self.streams.clear()
                return False
            case RoomStateUpdate(room_id=room_id, state=state, error_code=code):
                self.room_id, self.room_state, self.room_error = room_id, state, code
                return True
            case RoomUserUpdate(update_type=UpdateType.ADD, users=users):
                self.users.update({user.user_id: user for user in users})
                return True
            case RoomUserUpdate(users=users):
                for user in users:
                    self.users.pop(user.user_id, None)
                return True
            case (
                RoomStreamUpdate(update_type=UpdateType.ADD, streams=streams)
                | RoomStreamExtraInfoUpdate(streams=streams)
            ):
                self.streams.update({stream.stream_id: stream for stream in streams})
                return True
            case RoomStreamUpdate(streams=streams):
                for stream in streams:
                    self.streams.pop(stream.stream_id, None)
                return True
            case PublisherStateUpdate(stream_id=stream_id, state=state, error_code=code):
                self.publishers[stream_id] = (state, code)
                if state == PublisherState.NO_PUBLISH:
                    self.publish_quality.pop(stream_id, None)
                return True
            case PlayerStateUpdate(stream_id=stream_id, state=state, error_code=code):
                self.players[stream_id] = (state, code)
                if state == PlayerState.NO_PLAY:
                    self.play_quality.pop(stream_id, None)
                return True
            case PublisherQualityUpdate(stream_id=stream_id, quality=quality):
                self.publish_quality[stream_id] = quality
                if self.viewers.get(stream_id) != quality.viewers:
                    self.viewers[stream_id] = quality.viewers
                    return True
                return False
            case PlayerQualityUpdate(stream_id=stream_id, quality=quality):
                self.play_quality[stream_id] = quality
        return False

    def forget_stopped(self) -> None:
        """Drop publishers and players that ended (NO_PUBLISH / NO_PLAY) from the snapshot."""
        self.publishers = {k: v for k, v in self.publishers.items() if v[0]}
        self.players = {k: v for k, v in self.players.items() if v[0]}

    # ---- what the topics show ------------------------------------------------------

    def snapshot(self) -> JsonDict:
        """The retained ``state`` payload."""
        publisher: JsonDict | None = None
        for stream_id, (state, code) in self.publishers.items():
            publisher = {
                "stream_id": stream_id,
                "state": state.name,
                "state_code": int(state),
                "error_code": code,
                "viewers": self.viewers.get(stream_id, 0),
            }
            if state:
                break
        return {
            "device_id": self.device_id,
            "version": __version__,
            "room": {
                "room_id": self.room_id,
                "state": self.room_state.name,
                "state_code": int(self.room_state),
                "reason": self.reason.name,
                "reason_code": int(self.reason),
                "error_code": self.room_error,
            },
            "user_id": self.user_id,
            "users": [to_json(u) for u in self.users.values()],
            "user_count": len(self.users),
            "streams": [to_json(s) for s in self.streams.values()],
            "stream_count": len(self.streams),
            "publisher": publisher
            or {
                "stream_id": "",
                "state": "NO_PUBLISH",
                "state_code": 0,
                "error_code": 0,
                "viewers": 0,
            },
            "publishers": {
                sid: {
                    "state": st.name,
                    "state_code": int(st),
                    "error_code": code,
                    "viewers": self.viewers.get(sid, 0),
                }
                for sid, (st, code) in self.publishers.items()
            },
            "players": {
                sid: {"state": st.name, "state_code": int(st), "error_code": code}
                for sid, (st, code) in self.players.items()
            },
            "audio": self.audio,
        }

    def quality(self) -> JsonDict:
        """The ``quality`` payload: every report, and a summary of the first publisher."""
        pubs = {sid: to_json(q) for sid, q in self.publish_quality.items()}
        first = next(iter(self.publish_quality.values()), None)
        summary = {
            "video_kbps": round(first.video_kbps, 1) if first else None,
            "send_fps": round(first.send_fps, 1) if first else None,
            "rtt_ms": first.rtt_ms if first else None,
            "packet_loss_rate": first.packet_loss_rate if first else None,
            "viewers": first.viewers if first else 0,
        }
        return {
            "publisher": pubs,
            "players": {sid: to_json(q) for sid, q in self.play_quality.items()},
            "summary": summary,
        }
