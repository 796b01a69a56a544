"""The engine's events, one-to-one with the original SDK's callbacks.

Each event is defined once, as a frozen dataclass made by :func:`event`: its ``NAME`` is
the name of the :class:`EventHandler` method that receives it (and the ``event`` of the
daemon's MQTT payload), its fields are that method's arguments, in order. The engine builds
these objects and :class:`EventDispatcher` hands each one to every attached handler.

Subclass :class:`EventHandler` and override the methods you need, or override
:meth:`EventHandler.on_event` to receive the event objects themselves; attach the
handler before ``login_room`` so that no event is lost. Handlers run on the event loop,
in order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, dataclass_transform

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


@dataclass(frozen=True, slots=True)
class Event:
    """One engine event: the arguments of the handler method called ``NAME``."""

    NAME: ClassVar[str]

    def args(self) -> tuple[Any, ...]:
        """The fields in order: the positional arguments of the handler method."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


E = TypeVar("E", bound=Event)
Emit = Callable[[Event], None]
"""Where the engine's parts send the events they make (the engine's dispatcher)."""


@dataclass_transform(frozen_default=True)
def event(name: str) -> Callable[[type[E]], type[E]]:
    """Makes the decorated class the event ``name``: a frozen, slotted dataclass."""

    def define(cls: type[E]) -> type[E]:
        cls.NAME = name
        return dataclass(frozen=True, slots=True)(cls)

    return define


# ---- the room --------------------------------------------------------------------------


@event("room_state_update")
class RoomStateUpdate(Event):
    room_id: str
    state: RoomState
    error_code: int
    extended_data: dict[str, Any]


@event("room_state_changed")
class RoomStateChanged(Event):
    """Always just before the matching :class:`RoomStateUpdate`."""

    room_id: str
    reason: RoomStateChangedReason
    error_code: int
    extended_data: dict[str, Any]


@event("room_user_update")
class RoomUserUpdate(Event):
    """Only when the login asked for user notifications."""

    room_id: str
    update_type: UpdateType
    users: list[User]


@event("room_stream_update")
class RoomStreamUpdate(Event):
    """A DELETE carries ``{"reason": ...}`` in ``extended_data``."""

    room_id: str
    update_type: UpdateType
    streams: list[Stream]
    extended_data: dict[str, Any]


@event("room_stream_extra_info_update")
class RoomStreamExtraInfoUpdate(Event):
    room_id: str
    streams: list[Stream]


@event("room_broadcast_message")
class RoomBroadcastMessage(Event):
    room_id: str
    user: User
    message: str


@event("room_custom_command")
class RoomCustomCommand(Event):
    room_id: str
    user: User
    command: str


@event("room_token_will_expire")
class RoomTokenWillExpire(Event):
    room_id: str
    remaining_s: float


# ---- publishers and players ------------------------------------------------------------


@event("publisher_state_update")
class PublisherStateUpdate(Event):
    stream_id: str
    state: PublisherState
    error_code: int
    extended_data: dict[str, Any]


@event("player_state_update")
class PlayerStateUpdate(Event):
    stream_id: str
    state: PlayerState
    error_code: int
    extended_data: dict[str, Any]


@event("publisher_quality_update")
class PublisherQualityUpdate(Event):
    stream_id: str
    quality: PublishQuality


@event("player_quality_update")
class PlayerQualityUpdate(Event):
    stream_id: str
    quality: PlayQuality


@event("publisher_captured_video_first_frame")
class PublisherCapturedVideoFirstFrame(Event):
    stream_id: str


@event("player_recv_video_first_frame")
class PlayerRecvVideoFirstFrame(Event):
    stream_id: str


@event("player_recv_audio_first_frame")
class PlayerRecvAudioFirstFrame(Event):
    stream_id: str


@event("player_video_size_changed")
class PlayerVideoSizeChanged(Event):
    stream_id: str
    width: int
    height: int


# ---- receiving them --------------------------------------------------------------------


class EventHandler:
    """Receives every engine event; each method does nothing unless overridden.

    Each method's parameters are the fields of the event class whose ``NAME`` is the
    method's name (``tests/test_events.py`` holds them to it).
    """

    def on_event(self, event: Event) -> None:
        """Every event arrives here first. By default it calls the method named
        ``event.NAME`` with the event's fields, in order; override it to receive the
        event objects themselves."""
        getattr(self, event.NAME)(*event.args())

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
    """Hands each event to every attached handler; a failing handler is logged, not fatal."""

    def __init__(self) -> None:
        self.handlers: list[EventHandler] = []

    def emit(self, event: Event) -> None:
        for handler in self.handlers:
            try:
                handler.on_event(event)
            except Exception:
                log.exception("event handler %s.%s failed", type(handler).__name__, event.NAME)


class EventRecorder(EventHandler):
    """Records every event object, in order: for tests, logs and examples."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E], start: int = 0) -> list[E]:
        """The recorded events of one class, in order, from ``events[start]`` on."""
        return [e for e in self.events[start:] if isinstance(e, kind)]
