"""Home Assistant's publishing switch turned on while the device is logged out: `edged
run` logs in, then publishes, instead of refusing and letting the switch flip back.

The switch's command is the one the daemon announced in its discovery payload, sent the
way Home Assistant sends it (no request id, MQTT 3.1.1-style, on the command topic).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from broker import Broker
from conftest import APP, RunningServer
from daemonkit import DEVICE, STATE, DaemonProcess, command, publishing, write_config

pytestmark = pytest.mark.netns

DISCOVERY = f"homeassistant/device/{DEVICE}/config"
RESPONSE = f"edged/{DEVICE}/command/response"


def logged_out_at_start(path: Path) -> None:
    """The configuration with ``auto.login: false``: the daemon starts logged out."""
    config = yaml.safe_load(path.read_text())
    config["auto"]["login"] = False
    path.write_text(yaml.safe_dump(config))


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    d = DaemonProcess(tmp_path / "edged.yaml", tmp_path)
    yield d
    await d.close()


async def switch(mqtt: aiomqtt.Client) -> dict[str, Any]:
    """The publishing switch as the daemon announced it (read from the retained payload)."""
    await mqtt.subscribe(DISCOVERY, qos=1)
    async with asyncio.timeout(15):
        async for message in mqtt.messages:
            if message.topic.matches(DISCOVERY):
                payload = json.loads(message.payload)  # type: ignore[arg-type]
                return dict(payload["cmps"]["publishing"])
    raise AssertionError("unreachable")


async def turn_on(mqtt: aiomqtt.Client, comp: dict[str, Any]) -> list[dict[str, Any]]:
    """Send the switch's ``on`` payload as Home Assistant does; the states that follow,
    up to publishing (or the command's error), and the command's response last."""
    await mqtt.publish(comp["cmd_t"], comp["pl_on"], qos=1)
    seen: list[dict[str, Any]] = []
    response: dict[str, Any] | None = None
    async with asyncio.timeout(30):
        async for message in mqtt.messages:
            if message.topic.matches(STATE):
                seen.append(json.loads(message.payload))  # type: ignore[arg-type]
            elif message.topic.matches(RESPONSE):
                body = json.loads(message.payload)  # type: ignore[arg-type]
                if body["command"] == "start_publishing":
                    response = body
            if response is not None and (not response["ok"] or (seen and publishing(seen[-1]))):
                break
    assert response is not None
    return [*seen, response]


def logged_in_before_publishing(states: list[dict[str, Any]]) -> bool:
    """The room is CONNECTED in a state before the first one with a publisher."""
    connected = [s["room"]["state"] == "CONNECTED" for s in states]
    asked = [s["publisher"]["state"] != "NO_PUBLISH" for s in states]
    return True in connected and True in asked and connected.index(True) <= asked.index(True)


async def test_switch_on_while_logged_out_logs_in_then_publishes(
    daemon: DaemonProcess, broker: Broker, srv: RunningServer
) -> None:
    write_config(daemon.config, srv, broker)
    logged_out_at_start(daemon.config)
    await daemon.start()
    await daemon.notifications("READY=1")
    async with broker.client() as mqtt:
        comp = await switch(mqtt)
        await mqtt.subscribe(f"edged/{DEVICE}/#", qos=1)
        # Started logged out: the switch shows off.
        async with asyncio.timeout(10):
            async for message in mqtt.messages:
                if message.topic.matches(STATE):
                    first = json.loads(message.payload)  # type: ignore[arg-type]
                    break
        assert (first["room"]["state"], first["publisher"]["state"]) == (
            "DISCONNECTED",
            "NO_PUBLISH",
        )

        *states, response = await turn_on(mqtt, comp)
        assert response["ok"] is True, response
        assert response["result"] == {"stream_id": f"{DEVICE}-cam"}
        assert publishing(states[-1]) and logged_in_before_publishing(states)
        assert states[-1]["room"]["room_id"] == "porch"
        room = srv.server.rooms.store.room(APP, "porch")
        assert room is not None and DEVICE in room.members

        # Logged out by the button, then the switch again: the same.
        assert (await command(mqtt, "logout_room"))["ok"] is True
        *states, response = await turn_on(mqtt, comp)
        assert response["ok"] is True, response
        assert publishing(states[-1]) and logged_in_before_publishing(states)
        # ... and stop_publishing still only stops publishing.
        assert (await command(mqtt, "stop_publishing"))["ok"] is True
        got = await command(mqtt, "get_state")
        assert got["result"]["room"]["state"] == "CONNECTED"
        assert got["result"]["publisher"]["state"] == "NO_PUBLISH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_switch_on_when_the_login_fails_says_why(
    daemon: DaemonProcess, broker: Broker, srv: RunningServer
) -> None:
    """No room server to log in to: the command answers with the login's error (what
    Home Assistant's log shows), and the switch stays off."""
    write_config(daemon.config, srv, broker, server_url=f"ws://127.0.0.1:{free_port()}/ws")
    logged_out_at_start(daemon.config)
    await daemon.start()
    await daemon.notifications("READY=1")
    async with broker.client() as mqtt:
        comp = await switch(mqtt)
        await mqtt.subscribe(f"edged/{DEVICE}/#", qos=1)
        *states, response = await turn_on(mqtt, comp)
    assert response["ok"] is False
    assert response["error"]["code"] != 1000002  # not NOT_LOGGED_IN: the login was tried
    assert response["error"]["message"]
    assert not any(s["publisher"]["state"] == "PUBLISHING" for s in states)
