"""The daemon's view of the engine: the retained state snapshot and the event feed.

:class:`StateTracker` is an engine event handler. It keeps what the MQTT ``state``
topic shows (room, users, streams, publisher, players), turns every engine event into
the JSON of the ``event`` topic, and keeps the latest quality reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from typing import Any

from .. import __version__
from ..engine.events import EVENT_NAMES, EventHandler
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
QUALITY_EVENTS = ("publisher_quality_update", "player_quality_update")


def to_json(value: Any) -> Any:
    """Event arguments as JSON: enums by name, records as objects."""
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


# The argument names of each event, as they appear in its JSON.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "room_state_update": ("room_id", "state", "error_code", "extended_data"),
    "room_state_changed": ("room_id", "reason", "error_code", "extended_data"),
    "room_user_update": ("room_id", "update_type", "users"),
    "room_stream_update": ("room_id", "update_type", "streams", "extended_data"),
    "room_stream_extra_info_update": ("room_id", "streams"),
    "room_broadcast_message": ("room_id", "user", "message"),
    "room_custom_command": ("room_id", "user", "command"),
    "room_token_will_expire": ("room_id", "remaining_s"),
    "publisher_state_update": ("stream_id", "state", "error_code", "extended_data"),
    "player_state_update": ("stream_id", "state", "error_code", "extended_data"),
    "publisher_quality_update": ("stream_id", "quality"),
    "player_quality_update": ("stream_id", "quality"),
    "publisher_captured_video_first_frame": ("stream_id",),
    "player_recv_video_first_frame": ("stream_id",),
    "player_recv_audio_first_frame": ("stream_id",),
    "player_video_size_changed": ("stream_id", "width", "height"),
}


class StateTracker(EventHandler):
    """Owns the state snapshot, the latest quality, and the event and change callbacks."""

    def __init__(
        self,
        device_id: str,
        on_change: Callable[[], None],
        on_event: Callable[[JsonDict], None],
    ) -> None:
        self.device_id = device_id
        self._on_change = on_change
        self._on_event = on_event
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

    def __getattribute__(self, name: str) -> Any:
        if name in EVENT_NAMES:
            update = object.__getattribute__(self, "_update")
            return lambda *args: update(name, args)
        return object.__getattribute__(self, name)

    def _update(self, name: str, args: tuple[Any, ...]) -> None:
        fields = dict(zip(EVENT_FIELDS[name], args, strict=False))
        changed = self._apply(name, fields)
        if name not in QUALITY_EVENTS:
            self._on_event({"event": name, **to_json(fields)})
        if changed:
            self._on_change()

    def _apply(self, name: str, f: dict[str, Any]) -> bool:
        if name == "room_state_changed":
            self.reason = f["reason"]
            if f["reason"] in (
                RoomStateChangedReason.LOGOUT,
                RoomStateChangedReason.KICK_OUT,
                RoomStateChangedReason.RECONNECT_FAILED,
            ):
                self.users.clear()
                self.streams.clear()
            return False
        if name == "room_state_update":
            self.room_id, self.room_state, self.room_error = (
                f["room_id"],
                f["state"],
                f["error_code"],
            )
            return True
        if name == "room_user_update":
            for user in f["users"]:
                if f["update_type"] == UpdateType.ADD:
                    self.users[user.user_id] = user
                else:
                    self.users.pop(user.user_id, None)
            return True
        if name in ("room_stream_update", "room_stream_extra_info_update"):
            for stream in f["streams"]:
                if f.get("update_type", UpdateType.ADD) == UpdateType.ADD:
                    self.streams[stream.stream_id] = stream
                else:
                    self.streams.pop(stream.stream_id, None)
            return True
        if name == "publisher_state_update":
            self.publishers[f["stream_id"]] = (f["state"], f["error_code"])
            if f["state"] == PublisherState.NO_PUBLISH:
                self.publish_quality.pop(f["stream_id"], None)
            return True
        if name == "player_state_update":
            self.players[f["stream_id"]] = (f["state"], f["error_code"])
            if f["state"] == PlayerState.NO_PLAY:
                self.play_quality.pop(f["stream_id"], None)
            return True
        if name == "publisher_quality_update":
            self.publish_quality[f["stream_id"]] = f["quality"]
            viewers = f["quality"].viewers
            if self.viewers.get(f["stream_id"]) != viewers:
                self.viewers[f["stream_id"]] = viewers
                return True
            return False
        if name == "player_quality_update":
            self.play_quality[f["stream_id"]] = f["quality"]
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
