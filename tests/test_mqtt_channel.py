"""The MQTT control channel against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.daemon.actions import SCHEMAS
from edged.daemon.commands import Command
from edged.daemon.mqtt import ControlChannel, MqttSettings
from edged.daemon.topics import Topics
from edged.errors import EdgedError, ErrorCode
from edged.testing.waiting import until

from broker import Broker

TOPICS = Topics("edged", "dev1")


class Recorder:
    """Runs commands: echoes arguments; 'fail' commands raise."""

    def __init__(self) -> None:
        self.ran: list[Command] = []

    async def __call__(self, command: Command) -> Any:
        self.ran.append(command)
        if command.name == "stop_playing":
            raise EdgedError(ErrorCode.NOT_PLAYING)
        return {"echo": command.args.model_dump(exclude_none=True)}


async def start_channel(
    broker: Broker, protocol: int = 5
) -> tuple[ControlChannel, Recorder, asyncio.Task[None]]:
    rec = Recorder()
    channel = ControlChannel(
        MqttSettings("127.0.0.1", broker.port, protocol=protocol, retry_min=0.1, retry_max=0.5),
        TOPICS,
        rec,
        SCHEMAS,
    )
    task = asyncio.create_task(channel.run())
    await asyncio.wait_for(channel.connected.wait(), 5)
    return channel, rec, task


async def stop_channel(channel: ControlChannel, task: asyncio.Task[None]) -> None:
    await channel.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def collect(
    client: aiomqtt.Client, topic: str, count: int, timeout: float = 5
) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches(topic):
                got.append(message)
                if len(got) >= count:
                    return got
    return got


async def broker_holds(broker: Broker, topic: str, check: Callable[[Any], bool]) -> None:
    """Wait until the broker holds a payload on ``topic`` that passes ``check``: a new
    subscriber is sent the retained copy, or the message itself if it comes later."""
    async with broker.client() as watcher, asyncio.timeout(5):
        await watcher.subscribe(topic, qos=1)
        async for message in watcher.messages:
            if check(json.loads(message.payload)):  # type: ignore[arg-type]
                return


async def test_availability_online_then_offline_on_clean_stop(broker: Broker) -> None:
    channel, _, task = await start_channel(broker)
    async with broker.client() as watcher:
        await watcher.subscribe(TOPICS.availability, qos=1)
        (online,) = await collect(watcher, TOPICS.availability, 1)
        assert online.payload == b"online" and online.retain
        await stop_channel(channel, task)
        (offline,) = await collect(watcher, TOPICS.availability, 1)
        assert offline.payload == b"offline"


CHANNEL_PROCESS = """
import asyncio, sys
from edged.daemon.actions import SCHEMAS
from edged.daemon.mqtt import ControlChannel, MqttSettings
from edged.daemon.topics import Topics
async def main():
    async def nothing(command):
        return None
    channel = ControlChannel(MqttSettings("127.0.0.1", int(sys.argv[1])),
                             Topics("edged", "dev1"), nothing, SCHEMAS)
    await channel.run()
asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_daemon_dies(broker: Broker) -> None:
    async with broker.client() as watcher:
        await watcher.subscribe(TOPICS.availability, qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHANNEL_PROCESS, str(broker.port)
        )
        try:
            (online,) = await collect(watcher, TOPICS.availability, 1, timeout=15)
            assert online.payload == b"online"
            proc.kill()  # no clean stop: only the broker's last will can tell
            (will,) = await collect(watcher, TOPICS.availability, 1)
            assert will.payload == b"offline"
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_retained_state_reaches_late_subscribers_and_follows_changes(broker: Broker) -> None:
    channel, _, task = await start_channel(broker)
    channel.publish_state({"room": {"state": "CONNECTING"}})
    channel.publish_state({"room": {"state": "CONNECTED"}})
    await broker_holds(broker, TOPICS.state, lambda state: state["room"]["state"] == "CONNECTED")
    async with broker.client() as late:
        await late.subscribe(TOPICS.state, qos=1)
        (retained,) = await collect(late, TOPICS.state, 1)
        assert json.loads(retained.payload)["room"]["state"] == "CONNECTED"  # type: ignore[arg-type]
        channel.publish_state({"room": {"state": "DISCONNECTED"}})
        (live,) = await collect(late, TOPICS.state, 1)
        assert json.loads(live.payload)["room"]["state"] == "DISCONNECTED"  # type: ignore[arg-type]
    await stop_channel(channel, task)


async def test_state_published_the_moment_the_channel_connects_reaches_the_broker(
    broker: Broker,
) -> None:
    """A change made right after ``connected`` (no await in between) is not lost.

    The channel announces what is retained, then sets ``connected``; a caller woken by it
    runs before the channel's sender task first does. The broker must still end up with
    the newest state, whatever the interleaving (Python 3.13's ``wait_for`` adds no task
    hop, so the daemon hits exactly this on its first publish).
    """
    rec = Recorder()
    channel = ControlChannel(
        MqttSettings("127.0.0.1", broker.port, retry_min=0.1, retry_max=0.5), TOPICS, rec, SCHEMAS
    )
    channel.publish_state({"room": {"state": "CONNECTING"}})
    task = asyncio.create_task(channel.run())
    async with asyncio.timeout(5):
        await channel.connected.wait()
    channel.publish_state({"room": {"state": "CONNECTED"}})
    async with broker.client() as late:
        await late.subscribe(TOPICS.state, qos=1)
        seen: list[str] = []
        # The retained copy may be the older state with the newer one following live;
        # the broker must end with the newest (the old code never sent it: a timeout).
        while not seen or seen[-1] != "CONNECTED":
            (message,) = await collect(late, TOPICS.state, 1)
            seen.append(json.loads(message.payload)["room"]["state"])  # type: ignore[arg-type]
        assert seen[0] in ("CONNECTING", "CONNECTED")
    await stop_channel(channel, task)


async def test_command_response_carries_request_id(broker: Broker) -> None:
    channel, rec, task = await start_channel(broker)
    async with broker.client() as ctl:
        await ctl.subscribe(TOPICS.response, qos=1)
        await ctl.publish(
            TOPICS.command,
            json.dumps({"command": "start_playing", "stream_id": "s1", "request_id": "r-42"}),
            qos=1,
        )
        (msg,) = await collect(ctl, TOPICS.response, 1)
        body = json.loads(msg.payload)  # type: ignore[arg-type]
        assert body == {
            "request_id": "r-42",
            "command": "start_playing",
            "ok": True,
            "result": {"echo": {"stream_id": "s1"}},
        }
        await ctl.publish(
            TOPICS.command, json.dumps({"command": "stop_playing", "stream_id": "s1"}), qos=1
        )
        (msg,) = await collect(ctl, TOPICS.response, 1)
        body = json.loads(msg.payload)  # type: ignore[arg-type]
        assert (body["ok"], body["error"]["code"], body["request_id"]) == (False, 1004022, None)
    assert [c.name for c in rec.ran] == ["start_playing", "stop_playing"]
    await stop_channel(channel, task)


async def test_mqtt5_response_topic_and_correlation_data_are_honoured(broker: Broker) -> None:
    channel, _, task = await start_channel(broker)
    async with broker.client(protocol=aiomqtt.ProtocolVersion.V5) as ctl:
        await ctl.subscribe("client/replies", qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "client/replies"
        props.CorrelationData = b"\x01corr"
        await ctl.publish(
            TOPICS.command, json.dumps({"command": "get_state"}), qos=1, properties=props
        )
        (msg,) = await collect(ctl, "client/replies", 1)
        assert json.loads(msg.payload)["ok"] is True  # type: ignore[arg-type]
        assert msg.properties is not None and msg.properties.CorrelationData == b"\x01corr"
    await stop_channel(channel, task)


async def test_mqtt_3_1_1_clients_are_served_on_the_response_topic(broker: Broker) -> None:
    channel, _, task = await start_channel(broker, protocol=4)
    async with broker.client(protocol=aiomqtt.ProtocolVersion.V311) as ctl:
        await ctl.subscribe(TOPICS.response, qos=1)
        await ctl.publish(TOPICS.command, json.dumps({"command": "snapshot"}), qos=1)
        (msg,) = await collect(ctl, TOPICS.response, 1)
        assert json.loads(msg.payload)["command"] == "snapshot"  # type: ignore[arg-type]
    await stop_channel(channel, task)


BAD = [
    (b"not json", ErrorCode.COMMAND_MALFORMED),
    (b"[1, 2]", ErrorCode.COMMAND_MALFORMED),
    (b'{"command": "self_destruct"}', ErrorCode.COMMAND_UNKNOWN),
    (b'{"command": "start_playing"}', ErrorCode.COMMAND_INVALID_ARGUMENTS),
    (b'{"command": "start_playing", "stream_id": 7}', ErrorCode.COMMAND_INVALID_ARGUMENTS),
    (
        b'{"command": "mute_publish_audio", "muted": "yes", "x": 1}',
        ErrorCode.COMMAND_INVALID_ARGUMENTS,
    ),
    (
        b'{"command": "get_state", "pad": "' + b"x" * 70_000 + b'"}',
        ErrorCode.COMMAND_PAYLOAD_TOO_LARGE,
    ),
]


async def test_bad_commands_get_error_responses_and_run_nothing(broker: Broker) -> None:
    channel, rec, task = await start_channel(broker)
    async with broker.client() as ctl:
        await ctl.subscribe(TOPICS.response, qos=1)
        for payload, code in BAD:
            await ctl.publish(TOPICS.command, payload, qos=1)
            (msg,) = await collect(ctl, TOPICS.response, 1)
            body = json.loads(msg.payload)  # type: ignore[arg-type]
            assert (body["ok"], body["error"]["code"]) == (False, code), payload[:60]
        await ctl.publish(TOPICS.command, b'{"command": "get_state"}', qos=1)
        (msg,) = await collect(ctl, TOPICS.response, 1)
        assert json.loads(msg.payload)["ok"] is True  # type: ignore[arg-type]
    assert [c.name for c in rec.ran] == ["get_state"]
    await stop_channel(channel, task)


async def test_broker_restart_reconnects_and_republishes_retained(broker: Broker) -> None:
    channel, _, task = await start_channel(broker)
    channel.publish_state({"room": {"state": "CONNECTED"}})
    channel.set_discovery("homeassistant/device/dev1/config", {"dev": {"ids": ["dev1"]}})
    await broker_holds(broker, "homeassistant/device/dev1/config", bool)
    await broker_holds(broker, TOPICS.state, bool)  # sent on the first connection
    await broker.stop()  # persistence is off: the broker forgets every retained message
    await until(lambda: not channel.connected.is_set())
    await broker.start()
    await asyncio.wait_for(channel.connected.wait(), 10)
    async with broker.client() as late:
        await late.subscribe(TOPICS.state, qos=1)
        await late.subscribe(TOPICS.availability, qos=1)
        await late.subscribe("homeassistant/device/dev1/config", qos=1)
        got = await collect(late, "#", 3)
        by_topic = {m.topic.value: m.payload for m in got}
        assert by_topic[TOPICS.availability] == b"online"
        assert json.loads(by_topic[TOPICS.state])["room"]["state"] == "CONNECTED"  # type: ignore[arg-type]
    assert channel.connections == 2
    await stop_channel(channel, task)


async def test_home_assistant_birth_message_triggers_republish(broker: Broker) -> None:
    channel, _, task = await start_channel(broker)
    channel.set_discovery("homeassistant/device/dev1/config", {"dev": {"ids": ["dev1"]}})
    async with broker.client() as ha:
        await ha.subscribe("homeassistant/device/dev1/config", qos=1)
        await collect(ha, "homeassistant/device/#", 1)  # the retained copy (or the first)
        await ha.publish("homeassistant/status", "online", qos=1)
        (again,) = await collect(ha, "homeassistant/device/#", 1)
        assert json.loads(again.payload)["dev"]["ids"] == ["dev1"]  # type: ignore[arg-type]
    await stop_channel(channel, task)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.binary(max_size=300)
        | st.text(max_size=300).map(str.encode)
        | st.builds(
            lambda c, extra: json.dumps({"command": c, **extra}).encode(),
            st.sampled_from(
                [
                    "login_room",
                    "start_playing",
                    "mute_publish_video",
                    "set_video_config",
                    "nope",
                    "",
                ]
            ),
            st.dictionaries(
                st.sampled_from(["stream_id", "muted", "width", "fps", "token", "zzz"]),
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                max_size=3,
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fuzzed_commands_never_stop_the_channel(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes]
) -> None:
    asyncio.run(_fuzz(tmp_path_factory.mktemp("fuzz"), payloads))


async def _fuzz(workdir: Path, payloads: list[bytes]) -> None:
    broker = Broker(workdir)
    await broker.start()
    try:
        channel, _, task = await start_channel(broker)
        async with broker.client() as ctl:
            await ctl.subscribe(TOPICS.response, qos=1)
            for payload in payloads:
                await ctl.publish(TOPICS.command, payload, qos=1)
            await ctl.publish(TOPICS.command, b'{"command":"get_state","request_id":"end"}', qos=1)
            async with asyncio.timeout(10):
                async for msg in ctl.messages:
                    body = json.loads(msg.payload)  # type: ignore[arg-type]
                    assert set(body) <= {"request_id", "command", "ok", "error", "result"}
                    if body["request_id"] == "end":
                        assert body["ok"] is True
                        break
        assert not task.done()
        await stop_channel(channel, task)
    finally:
        await broker.stop()
