"""The engine's events, one-to-one with the original SDK's callbacks.

Subclass :class:`EventHandler` and override what you need; attach it before
``login_room`` so that no event is lost. Handlers run on the event loop, in order.
"""

from __future__ import annotations

import logging
from typing import Any

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

log = logging.getLogger("edged.engine")

EVENT_NAMES = (
    "room_state_update",
    "room_state_changed",
    "room_user_update",
    "room_stream_update",
    "room_stream_extra_info_update",
    "room_broadcast_message",
    "room_custom_command",
    "room_token_will_expire",
    "publisher_state_update",
    "player_state_update",
    "publisher_quality_update",
    "player_quality_update",
    "publisher_captured_video_first_frame",
    "player_recv_video_first_frame",
    "player_recv_audio_first_frame",
    "player_video_size_changed",
)


class EventHandler:
    """Receives every engine event; each method does nothing unless overridden."""

    def room_state_update(
        self, room_id: str, state: RoomState, error_code: int, extended_data: dict[str, Any]
    ) -> None: ...

    def room_state_changed(
        self,
        room_id: str,
        reason: RoomStateChangedReason,
        error_code: int,
        extended_data: dict[str, Any],
    ) -> None: ...

    def room_user_update(
        self, room_id: str, update_type: UpdateType, users: list[User]
    ) -> None: ...

    def room_stream_update(
        self,
        room_id: str,
        update_type: UpdateType,
        streams: list[Stream],
        extended_data: dict[str, Any],
    ) -> None: ...

    def room_stream_extra_info_update(self, room_id: str, streams: list[Stream]) -> None: ...

    def room_broadcast_message(self, room_id: str, user: User, message: str) -> None: ...

    def room_custom_command(self, room_id: str, user: User, command: str) -> None: ...

    def room_token_will_expire(self, room_id: str, remaining_s: float) -> None: ...

    def publisher_state_update(
        self, stream_id: str, state: PublisherState, error_code: int, extended_data: dict[str, Any]
    ) -> None: ...

    def player_state_update(
        self, stream_id: str, state: PlayerState, error_code: int, extended_data: dict[str, Any]
    ) -> None: ...

    def publisher_quality_update(self, stream_id: str, quality: PublishQuality) -> None: ...

    def player_quality_update(self, stream_id: str, quality: PlayQuality) -> None: ...

    def publisher_captured_video_first_frame(self, stream_id: str) -> None: ...

    def player_recv_video_first_frame(self, stream_id: str) -> None: ...

    def player_recv_audio_first_frame(self, stream_id: str) -> None: ...

    def player_video_size_changed(self, stream_id: str, width: int, height: int) -> None: ...


class EventDispatcher:
    """Calls every attached handler for each event; a failing handler is logged, not fatal."""

    def __init__(self) -> None:
        self.handlers: list[EventHandler] = []

    def emit(self, name: str, *args: Any) -> None:
        for handler in self.handlers:
            try:
                getattr(handler, name)(*args)
            except Exception:
                log.exception("event handler %s.%s failed", type(handler).__name__, name)


class EventRecorder(EventHandler):
    """Records every event as ``(name, args)``: for tests, logs and the control channel."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in EVENT_NAMES:
            events = object.__getattribute__(self, "events")
            return lambda *args: events.append((name, args))
        return object.__getattribute__(self, name)
