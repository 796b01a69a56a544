"""Fixtures of the Home Assistant harness: a real broker, a real `edged run` with its
embedded room server publishing the test pattern, and Home Assistant's MQTT connected to
that broker — all inside the harness's network namespace (edged.testing.pytest_plugin).

The daemon runs from the main virtual environment (.venv), as a user runs it; this
process is Home Assistant's (.venv-ha), with aiortc only for the frontend's stand-in.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
import pytest_socket
import yaml
from alsa import pcms as alsa_pcms
from homeassistant.components import mqtt
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from edged.testing.daemon import start_listening, stop_process
from edged.testing.waiting import until

from broker import Broker, free_port

ROOT = Path(__file__).resolve().parents[2]
EDGED = Path(os.environ.get("EDGED_BIN", ROOT / ".venv" / "bin" / "edged"))
DEVICE = "door1"
APP = "default"
SECRET = "ha-harness-app-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/edged like any custom integration."""


@pytest.fixture(autouse=True)
def real_sockets() -> Iterator[None]:
    """Home Assistant's harness forbids sockets; these tests use real ones, all inside
    the harness's network namespace (the broker, the room server, WebRTC)."""
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1", "198.18.0.1", "198.18.0.2"])
    yield


@pytest.fixture(autouse=True)
def mock_network() -> Iterator[None]:
    """The harness's own fixture of this name makes ifaddr report one made-up adapter
    (10.10.10.10), which would leave the frontend's peer without a candidate: here the
    adapters are the real ones of the harness's namespace."""
    yield


class Daemon:
    """One `edged run` of device ``door1``: embedded room server, MQTT, test pattern."""

    def __init__(self, workdir: Path, broker: Broker) -> None:
        # Its speaker is the tests' file PCM (tests/alsa): what it plays lands in a file.
        self.pcms = alsa_pcms.install(workdir)
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "edged.yaml"
        self.log = workdir / "daemon.log"
        (workdir / "apps.yaml").write_text(yaml.safe_dump({APP: SECRET}))
        self.config.write_text(
            yaml.safe_dump(
                {
                    "device": {"id": DEVICE, "name": "Front door"},
                    "room": {"app_id": APP, "room_id": "porch", "user_id": DEVICE},
                    "server": {"host": "127.0.0.1", "port": self.port, "apps_file": "apps.yaml"},
                    "auto": {"publish": {"stream_id": f"{DEVICE}-cam"}},
                    "video": {"source": "testpattern", "width": 320, "height": 240},
                    "audio": {"source": "tone", "playback_device": alsa_pcms.SPEAKER},
                    "mqtt": {"host": "127.0.0.1", "port": broker.port, "snapshot_interval_s": 0},
                    "timers": {"retry_min_s": 0.1, "retry_max_s": 0.5},
                    "logging": {"journald": False},
                }
            )
        )
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await start_listening(
            [str(EDGED), "run", "--config", str(self.config)],
            self.log,
            "127.0.0.1",
            self.port,
            env={**os.environ, "ALSA_CONFIG_PATH": alsa_pcms.config_path(self.pcms)},
        )

    async def stop(self) -> None:
        await stop_process(self.proc, 20)
        self.proc = None


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(tmp_path)
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def daemon(tmp_path: Path, broker: Broker) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path, broker)
    await d.start()
    yield d
    await d.stop()
    print(d.log.read_text()[-3000:])  # shown by pytest when the test failed


@pytest.fixture
async def ha_mqtt(hass: HomeAssistant, broker: Broker) -> AsyncIterator[MockConfigEntry]:
    """Home Assistant's own MQTT integration, connected to the real broker (the harness
    has no configuration.yaml: MQTT reads an empty one)."""
    entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={"broker": "127.0.0.1", "port": broker.port, "discovery": True},
    )
    entry.add_to_hass(hass)
    with patch("homeassistant.config.async_hass_config_yaml", AsyncMock(return_value={})):
        assert await hass.config_entries.async_setup(entry.entry_id)
        assert await mqtt.async_wait_for_mqtt_client(hass)
        yield entry


class DeviceState:
    """The daemon's retained state topic, as Home Assistant receives it."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    def on_message(self, msg: Any) -> None:
        self.last = json.loads(msg.payload)

    async def until(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        await until(lambda: bool(self.last) and check(self.last), 30, what)
        return self.last


@pytest.fixture
async def device_state(hass: HomeAssistant, ha_mqtt: MockConfigEntry) -> AsyncIterator[DeviceState]:
    state = DeviceState()
    unsubscribe = await mqtt.async_subscribe(hass, f"edged/{DEVICE}/state", state.on_message, 1)
    yield state
    unsubscribe()
