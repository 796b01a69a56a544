"""Each event is defined once: the handler methods, the dispatcher and the daemon's MQTT
payloads all follow the event classes of ``edged.engine.events``."""

from __future__ import annotations

import inspect
import json
import logging
import typing
from dataclasses import fields
from typing import Any

import pytest

from edged.daemon.state import StateTracker
from edged.engine import events
from edged.engine.events import Event, EventDispatcher, EventHandler, EventRecorder
from edged.model import (
    PlayerState,
    PlayQuality,
    PublisherState,
    PublishQuality,
    RoomState,
    Stream,
    UpdateType,
    User,
)
from edged.model import RoomStateChangedReason as R

EVENT_CLASSES = [
    cls
    for cls in vars(events).values()
    if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
]


def handler_methods() -> set[str]:
    return {
        name
        for name, value in vars(EventHandler).items()
        if callable(value) and not name.startswith("_") and name != "on_event"
    }


def test_every_handler_method_has_one_event_class() -> None:
    names = [cls.NAME for cls in EVENT_CLASSES]
    assert len(names) == len(set(names)) == 16
    assert set(names) == handler_methods()


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda cls: cls.NAME)
def test_handler_parameters_are_the_event_fields(cls: type[Event]) -> None:
    """Names, order and annotations: a field added to one and not the other fails here."""
    method = getattr(EventHandler, cls.NAME)
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    field_names = [f.name for f in fields(cls)]
    assert [p.name for p in params] == field_names
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
    method_hints = typing.get_type_hints(method)
    assert method_hints.pop("return") is type(None)
    class_hints = typing.get_type_hints(cls)
    assert method_hints == {name: class_hints[name] for name in field_names}


def test_the_dispatcher_calls_each_method_with_the_fields_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[tuple[Any, ...]] = []

    class Failing(EventHandler):
        def room_state_update(self, *args: Any) -> None:
            raise RuntimeError("boom")

    class Renamed(EventHandler):  # parameters are positional: their names are the user's
        def room_state_update(self, rid: str, st: RoomState, code: int, data: Any) -> None:
            heard.append((rid, st, code, data))

    recorder = EventRecorder()
    dispatcher = EventDispatcher()
    dispatcher.handlers += [Failing(), Renamed(), recorder]
    event = events.RoomStateUpdate("r", RoomState.CONNECTED, 0, {"k": 1})
    with caplog.at_level(logging.ERROR, "edged.engine"):
        dispatcher.emit(event)
        dispatcher.emit(events.PlayerRecvVideoFirstFrame("s1"))  # not overridden: ignored
    assert heard == [("r", RoomState.CONNECTED, 0, {"k": 1})]
    assert recorder.events == [event, events.PlayerRecvVideoFirstFrame("s1")]
    assert recorder.of(events.RoomStateUpdate) == [event]
    assert "Failing.room_state_update failed" in caplog.text


BOB = User("B", "Bob")
S1 = Stream("s1", BOB, "front door")
STREAM_JSON = '{"stream_id": "s1", "user_id": "B", "user_name": "Bob", "extra_info": "front door"}'
USER_JSON = '{"user_id": "B", "user_name": "Bob"}'
FEED: list[tuple[Event, str | None]] = [
    (
        events.RoomStateChanged("r", R.LOGINED, 0, {}),
        '{"event": "room_state_changed", "room_id": "r", "reason": "LOGINED", "error_code": 0, '
        '"extended_data": {}}',
    ),
    (
        events.RoomStateUpdate("r", RoomState.CONNECTED, 0, {}),
        '{"event": "room_state_update", "room_id": "r", "state": "CONNECTED", "error_code": 0, '
        '"extended_data": {}}',
    ),
    (
        events.RoomUserUpdate("r", UpdateType.ADD, [BOB]),
        f'{{"event": "room_user_update", "room_id": "r", "update_type": "ADD", '
        f'"users": [{USER_JSON}]}}',
    ),
    (
        events.RoomStreamUpdate("r", UpdateType.ADD, [S1], {}),
        f'{{"event": "room_stream_update", "room_id": "r", "update_type": "ADD", '
        f'"streams": [{STREAM_JSON}], "extended_data": {{}}}}',
    ),
    (
        events.RoomStreamExtraInfoUpdate("r", [S1]),
        f'{{"event": "room_stream_extra_info_update", "room_id": "r", "streams": [{STREAM_JSON}]}}',
    ),
    (
        events.RoomBroadcastMessage("r", BOB, "hello"),
        f'{{"event": "room_broadcast_message", "room_id": "r", "user": {USER_JSON}, '
        f'"message": "hello"}}',
    ),
    (
        events.RoomCustomCommand("r", BOB, "ring"),
        f'{{"event": "room_custom_command", "room_id": "r", "user": {USER_JSON}, '
        f'"command": "ring"}}',
    ),
    (
        events.RoomTokenWillExpire("r", 30.0),
        '{"event": "room_token_will_expire", "room_id": "r", "remaining_s": 30.0}',
    ),
    (
        events.PublisherStateUpdate("cam", PublisherState.PUBLISHING, 0, {}),
        '{"event": "publisher_state_update", "stream_id": "cam", "state": "PUBLISHING", '
        '"error_code": 0, "extended_data": {}}',
    ),
    (
        events.PlayerStateUpdate("s1", PlayerState.PLAY_REQUESTING, 1004020, {"x": 1}),
        '{"event": "player_state_update", "stream_id": "s1", "state": "PLAY_REQUESTING", '
        '"error_code": 1004020, "extended_data": {"x": 1}}',
    ),
    (
        events.PublisherQualityUpdate(
            "cam", PublishQuality(send_fps=29.5, video_kbps=812.34, rtt_ms=12.0, viewers=2)
        ),
        None,
    ),
    (events.PlayerQualityUpdate("s1", PlayQuality(recv_fps=30.0, delay_ms=80.0)), None),
    (
        events.PublisherCapturedVideoFirstFrame("cam"),
        '{"event": "publisher_captured_video_first_frame", "stream_id": "cam"}',
    ),
    (
        events.PlayerRecvVideoFirstFrame("s1"),
        '{"event": "player_recv_video_first_frame", "stream_id": "s1"}',
    ),
    (
        events.PlayerRecvAudioFirstFrame("s1"),
        '{"event": "player_recv_audio_first_frame", "stream_id": "s1"}',
    ),
    (
        events.PlayerVideoSizeChanged("s1", 640, 480),
        '{"event": "player_video_size_changed", "stream_id": "s1", "width": 640, "height": 480}',
    ),
]


def test_every_event_reaches_the_event_topic_as_before() -> None:
    """The payloads of the MQTT contract, byte for byte; quality goes to its own topic."""
    assert {type(e) for e, _ in FEED} == set(EVENT_CLASSES)
    published: list[str] = []
    tracker = StateTracker("dev", lambda: None, lambda e: published.append(json.dumps(e)))
    for event, _ in FEED:
        tracker.on_event(event)
    assert published == [payload for _, payload in FEED if payload is not None]


def test_the_tracker_folds_events_into_the_state_snapshot() -> None:
    changes: list[str] = []
    tracker = StateTracker("dev", lambda: changes.append("x"), lambda e: None)
    for event, _ in FEED:
        before = len(changes)
        tracker.on_event(event)
        changes[before:] = [event.NAME] * (len(changes) - before)
    assert changes == [
        "room_state_update",
        "room_user_update",
        "room_stream_update",
        "room_stream_extra_info_update",
        "publisher_state_update",
        "player_state_update",
        "publisher_quality_update",  # the viewer count changed
    ]
    snap = tracker.snapshot()
    assert (snap["room"]["state"], snap["user_count"], snap["stream_count"]) == ("CONNECTED", 1, 1)
    assert snap["publishers"] == {
        "cam": {"state": "PUBLISHING", "state_code": 2, "error_code": 0, "viewers": 2}
    }
    player = {"state": "PLAY_REQUESTING", "state_code": 1, "error_code": 1004020}
    assert snap["players"] == {"s1": player}
    assert tracker.quality()["summary"]["viewers"] == 2
    tracker.on_event(events.RoomStreamUpdate("r", UpdateType.DELETE, [S1], {"reason": "stopped"}))
    tracker.on_event(events.RoomUserUpdate("r", UpdateType.DELETE, [BOB]))
    assert (tracker.snapshot()["user_count"], tracker.snapshot()["stream_count"]) == (0, 0)
    tracker.on_event(events.RoomStreamUpdate("r", UpdateType.ADD, [S1], {}))
    tracker.on_event(events.RoomStateChanged("r", R.KICK_OUT, 1002050, {}))
    assert tracker.snapshot()["stream_count"] == 0
    tracker.on_event(events.PublisherStateUpdate("cam", PublisherState.NO_PUBLISH, 0, {}))
    assert tracker.quality()["publisher"] == {}
