"""``view_token``: the device mints a short-lived, play-only token for one viewer of its
stream (what Home Assistant's camera asks for) and names the WHEP URL to play it at."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edged.daemon.view_token import VIEWER_PREFIX, view_token, whep_url
from edged.engine.config import EngineProfile
from edged.errors import EdgedError, ErrorCode
from edged.testing.waiting import until
from edged.tokens import verify

from broker import Broker
from conftest import APP, SECRET, RunningServer
from daemonkit import DEVICE, DaemonProcess, command, publishing, state_where, write_config
from test_whep import whep_play

pytestmark = pytest.mark.netns


def test_the_whep_url_is_on_the_server_the_device_uses_or_its_page() -> None:
    assert whep_url("ws://10.0.0.5:8790/ws", "default", "door1-cam") == (
        "http://10.0.0.5:8790/whep/default/door1-cam"
    )
    assert whep_url("wss://rooms.example.org/ws", "a b", "cam/1") == (
        "https://rooms.example.org/whep/a%20b/cam%2F1"
    )
    assert whep_url("https://door1.local:8790", "default", "cam") == (
        "https://door1.local:8790/whep/default/cam"
    )


def test_a_device_without_its_apps_secret_cannot_mint() -> None:
    profile = EngineProfile(app_id=APP, server_url="ws://127.0.0.1:1/ws", token="given")
    with pytest.raises(EdgedError) as refused:
        view_token(profile, "porch", "cam", 60)
    assert refused.value.code == ErrorCode.CREDENTIALS_MISSING


@pytest.fixture
async def daemon(
    tmp_path: Path, srv: RunningServer, broker: Broker
) -> AsyncIterator[DaemonProcess]:
    config = tmp_path / "edged.yaml"
    write_config(config, srv, broker)
    d = DaemonProcess(config, tmp_path)
    yield d
    await d.close()


async def test_a_viewer_token_plays_the_devices_stream_and_nothing_more(
    daemon: DaemonProcess, broker: Broker, srv: RunningServer
) -> None:
    async with broker.client() as mqtt:
        await mqtt.subscribe(f"edged/{DEVICE}/#", qos=1)
        await daemon.start()
        await state_where(mqtt, publishing)
        reply = await command(mqtt, "view_token", ttl_s=120)
        assert reply["ok"], reply
        result = reply["result"]
        stream = f"{DEVICE}-cam"
        http = srv.url.replace("ws://", "http://").removesuffix("/ws")
        assert result["url"] == f"{http}/whep/{APP}/{stream}"
        assert result["user_id"].startswith(VIEWER_PREFIX)
        assert abs(result["expires_at"] - (time.time() + 120)) < 10
        claims = verify(
            result["token"], SECRET, app_id=APP, user_id=result["user_id"], room_id="porch"
        )
        assert (claims.user_id, claims.room_id) == (result["user_id"], "porch")
        assert claims.may_publish(stream) == ErrorCode.NO_PUBLISH_PRIVILEGE
        # Two asks, two viewers: neither takes the other's place in the room.
        other = (await command(mqtt, "view_token"))["result"]
        assert other["user_id"] != result["user_id"]

        played = await whep_play(srv, result["token"], stream_id=stream)
        try:
            assert played.status == 201, played.body
            sink = played.sink
            await state_where(
                mqtt, lambda s: result["user_id"] in {u["user_id"] for u in s["users"]}
            )
            await until(lambda: sink.video is not None and sink.video.stats().decoded >= 20, 30)
        finally:
            await played.pc.close()

        assert (await command(mqtt, "stop_publishing"))["ok"]
        refused = await command(mqtt, "view_token")
        assert refused["error"]["code"] == ErrorCode.NOT_PUBLISHING
