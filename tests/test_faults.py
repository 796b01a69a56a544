"""Faults on the network between a device and the others, and what each side sees.

The device (engine B, publishing) reaches the room server through a port of its own, so
a partition can cut it off from the server and from every peer (all UDP) while user A,
who plays its stream, stays connected to the server. Faults are netfilter rules in the
session's namespace (:mod:`edged.testing.faults`). Each test states what the users see
(states, codes, events) and proves the call resumes: frames decoded again after the
fault, with the time code still in order.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp import web

from edged.engine.config import RoomConfig
from edged.engine.engine import Engine
from edged.engine.events import (
    Event,
    EventRecorder,
    PlayerQualityUpdate,
    PlayerStateUpdate,
    PublisherQualityUpdate,
    PublisherStateUpdate,
    RoomStateChanged,
    RoomStreamUpdate,
    RoomTokenWillExpire,
    RoomUserUpdate,
)
from edged.model import PlayerState as PS
from edged.model import PublisherState, RoomState, User
from edged.model import RoomStateChangedReason as R
from edged.model import UpdateType as U
from edged.testing.faults import NetworkFaults
from edged.testing.waiting import until

from broker import Broker
from conftest import RunningServer, ServerFactory, free_port
from daemonkit import DEVICE, STATE, DaemonProcess, command, publishing, state_where, write_config
from enginekit import FAST, AnalysisSink, make_engine

pytestmark = pytest.mark.netns


@pytest.fixture
def faults() -> Iterator[NetworkFaults]:
    with NetworkFaults() as f:
        yield f


class Call:
    """Device B publishing ``cam`` through its own server port, user A playing it."""

    def __init__(self, srv: RunningServer, device_port: int, **device_profile: object) -> None:
        self.device_port = device_port
        url = f"ws://127.0.0.1:{device_port}/ws"
        self.a, self.rec_a = make_engine(srv)
        self.b, self.rec_b = make_engine(srv, server_url=url, **device_profile)
        self.sink = AnalysisSink()

    async def start(self) -> None:
        await self.a.login_room("r", User("A"), RoomConfig(user_update=True))
        await self.b.login_room("r", User("B"))
        await self.b.start_publishing("cam")
        await until(lambda: "cam" in self.a.streams)
        await self.a.start_playing("cam", self.sink)
        await until(lambda: self.decoded() >= 15, 15)

    def decoded(self) -> int:
        return self.sink.video.stats().decoded if self.sink.video else 0

    async def frames_flow(self, more: int = 30, timeout: float = 20) -> None:
        """``more`` frames decoded from now on, still in time-code order."""
        start = self.decoded()
        await until(lambda: self.decoded() >= start + more, timeout)
        assert self.sink.video is not None
        assert self.sink.video.stats().out_of_order == 0

    def mark(self) -> tuple[int, int]:
        return len(self.rec_a.events), len(self.rec_b.events)

    @staticmethod
    def since(rec: EventRecorder, start: int, *kinds: type[Event]) -> list[Event]:
        return [e for e in rec.events[start:] if isinstance(e, kinds)]

    async def close(self) -> None:
        await asyncio.gather(self.a.destroy(), self.b.destroy())


async def device_port(srv: RunningServer) -> int:
    """A second port of the same server, used only by the device."""
    port = free_port()
    await web.TCPSite(srv.runner, "127.0.0.1", port).start()
    return port


@pytest.fixture
async def realistic(server_factory: ServerFactory) -> RunningServer:
    """A server with the default heartbeat interval and timeout (10 s, 30 s)."""
    return await server_factory(heartbeat_interval_s=10.0, heartbeat_timeout_s=30.0)


def udp_pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("198.18.0.2", 0))
    rx.settimeout(1.0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("198.18.0.1", 0))
    return tx, rx


def delivered(tx: socket.socket, rx: socket.socket, count: int) -> int:
    for i in range(count):
        tx.sendto(i.to_bytes(4, "big"), rx.getsockname())
    got = 0
    with pytest.raises(TimeoutError):
        while True:
            rx.recv(16)
            got += 1
    return got


def test_the_fault_rules_drop_lose_and_delay_udp(faults: NetworkFaults) -> None:
    tx, rx = udp_pair()
    with tx, rx:
        assert delivered(tx, rx, 50) == 50
        faults.partition()
        assert delivered(tx, rx, 50) == 0
        faults.heal()
        faults.loss(0.5)
        assert 5 < delivered(tx, rx, 200) < 195
        faults.heal()
        queue = faults.delay(0.3)
        sent = time.monotonic()
        tx.sendto(b"late", rx.getsockname())
        assert rx.recv(16) == b"late"
        assert time.monotonic() - sent >= 0.3
        assert queue.passed == 1
        faults.heal()
        assert delivered(tx, rx, 50) == 50


async def test_ten_percent_loss_and_200ms_delay_keep_the_call(
    srv: RunningServer, faults: NetworkFaults
) -> None:
    """A bad link: both users stay in PLAYING / PUBLISHING, frames keep coming in order,
    and quality shows the loss and the round trip (200 ms each way); once the link is
    good again, so is the quality."""
    call = Call(srv, await device_port(srv))
    try:
        await call.start()
        mark_a, mark_b = call.mark()
        faults.loss(0.10)
        faults.delay(0.200)

        def bad_link_seen() -> bool:
            sent = call.rec_b.of(PublisherQualityUpdate, mark_b)
            got = call.rec_a.of(PlayerQualityUpdate, mark_a)
            return any((e.quality.rtt_ms or 0) >= 350 for e in sent) and any(
                e.quality.packet_loss_rate >= 0.02 for e in got
            )

        await until(bad_link_seen, 30)
        await call.frames_flow(60, 30)
        faults.heal()
        mark_a, mark_b = call.mark()

        def good_again() -> bool:
            got = call.rec_a.of(PlayerQualityUpdate, mark_a)
            sent = call.rec_b.of(PublisherQualityUpdate, mark_b)
            return (
                bool(got and sent)
                and got[-1].quality.packet_loss_rate == 0.0
                and (sent[-1].quality.rtt_ms or 0) < 100
            )

        await until(good_again, 20)
        await call.frames_flow(30)
        # Nobody saw a state change through it all.
        assert call.rec_a.of(PlayerStateUpdate)[-1].state == PS.PLAYING
        assert [e.state for e in call.rec_a.of(PlayerStateUpdate)] == [
            PS.PLAY_REQUESTING,
            PS.PLAYING,
        ]
        assert [e.state for e in call.rec_b.of(PublisherStateUpdate)] == [
            PublisherState.PUBLISH_REQUESTING,
            PublisherState.PUBLISHING,
        ]
    finally:
        await call.close()


async def test_five_second_partition_is_invisible_and_media_resumes(
    realistic: RunningServer, faults: NetworkFaults
) -> None:
    """Shorter than the heartbeat timeout and ICE consent: no one sees any state change,
    the same peer connections carry the picture again once the network is back."""
    call = Call(realistic, await device_port(realistic))
    try:
        await call.start()
        mark_a, mark_b = call.mark()
        faults.partition(udp=True, tcp_ports=[call.device_port])
        await asyncio.sleep(1.0)  # the partition lasts 5 s: what was on the way lands
        frozen = call.decoded()
        await asyncio.sleep(4.0)  # and then nothing for the rest of it
        assert call.decoded() - frozen <= 2  # nothing gets through a partition
        faults.heal()
        await call.frames_flow(30)
        assert call.since(call.rec_a, mark_a, RoomStateChanged, PlayerStateUpdate) == []
        assert call.since(call.rec_b, mark_b, RoomStateChanged, PublisherStateUpdate) == []
        assert call.since(call.rec_a, mark_a, RoomUserUpdate, RoomStreamUpdate) == []
    finally:
        await call.close()


async def test_sixty_second_partition_rebuilds_the_peer_connections(
    server_factory: ServerFactory, faults: NetworkFaults
) -> None:
    """Past ICE consent (about 30 s) but within the server's session timeout: the device
    sees RECONNECTING then RECONNECTED (its session resumed, no one saw it leave); the
    player goes back to PLAY_REQUESTING when consent expires, and to PLAYING on a new
    peer connection once the network is back."""
    srv = await server_factory(heartbeat_interval_s=10.0, heartbeat_timeout_s=90.0)
    call = Call(srv, await device_port(srv), timers=replace(FAST, reconnect_give_up=180.0))
    try:
        await call.start()
        mark_a, mark_b = call.mark()
        faults.partition(udp=True, tcp_ports=[call.device_port])
        cut_at = time.monotonic()
        await until(lambda: call.a.player_state("cam") == PS.PLAY_REQUESTING, 50)
        await until(lambda: call.b.room_state == RoomState.CONNECTING, 60)
        await asyncio.sleep(max(0.0, 60.0 - (time.monotonic() - cut_at)))
        faults.heal()
        await until(lambda: call.a.player_state("cam") == PS.PLAYING, 30)
        await call.frames_flow(30)
        changes = call.rec_b.of(RoomStateChanged, mark_b)
        assert [(e.reason, e.error_code) for e in changes] == [
            (R.RECONNECTING, 1002051),
            (R.RECONNECTED, 0),
        ]
        assert [e.state for e in call.rec_a.of(PlayerStateUpdate, mark_a)] == [
            PS.PLAY_REQUESTING,
            PS.PLAYING,
        ]
        # The device never left the room in the others' eyes.
        assert call.since(call.rec_a, mark_a, RoomUserUpdate, RoomStreamUpdate) == []
        assert call.b.publisher_state("cam") == PublisherState.PUBLISHING
    finally:
        await call.close()


async def test_partition_past_the_give_up_time_ends_the_session_then_a_login_restores(
    srv: RunningServer, faults: NetworkFaults
) -> None:
    """Longer than the device's give-up time: the device ends in DISCONNECTED with
    1002053 and stops publishing with that code; the others see its stream and user
    leave (heartbeat timeout). A new login after the network returns restores the call."""
    call = Call(srv, await device_port(srv), timers=replace(FAST, reconnect_give_up=3.0))
    try:
        await call.start()
        mark_a, _ = call.mark()
        faults.partition(udp=True, tcp_ports=[call.device_port])
        await until(
            lambda: call.b.room_info is not None and call.b.room_state == RoomState.DISCONNECTED, 30
        )
        changes = call.rec_b.of(RoomStateChanged)
        assert [(e.reason, e.error_code) for e in changes][-2:] == [
            (R.RECONNECTING, 1002051),
            (R.RECONNECT_FAILED, 1002053),
        ]
        published = call.rec_b.of(PublisherStateUpdate)[-1]
        assert (published.state, published.error_code) == (PublisherState.NO_PUBLISH, 1002053)
        await until(lambda: call.a.player_state("cam") == PS.PLAY_REQUESTING)
        deleted, left = call.since(call.rec_a, mark_a, RoomStreamUpdate, RoomUserUpdate)
        assert isinstance(deleted, RoomStreamUpdate) and isinstance(left, RoomUserUpdate)
        assert (deleted.update_type, left.update_type) == (U.DELETE, U.DELETE)
        assert deleted.extended_data == {"reason": "heartbeat_timeout"}
        faults.heal()
        await call.b.login_room("r", User("B"))
        await call.b.start_publishing("cam")
        await until(lambda: call.a.player_state("cam") == PS.PLAYING, 20)
        await call.frames_flow(30)
    finally:
        await call.close()


async def test_token_expiry_mid_call_with_renewal_goes_unnoticed(
    server_factory: ServerFactory,
) -> None:
    """A device with the app secret mints short tokens and renews each one when the
    server warns: the call runs past several expiries and nobody sees anything."""
    srv = await server_factory(token_warning_s=2.0)
    call = Call(srv, await device_port(srv), token_ttl_s=4.0)
    try:
        await call.start()
        mark_a, mark_b = call.mark()
        first_expiry = call.b.room_info.token_expires_at if call.b.room_info else None
        assert first_expiry is not None
        await asyncio.sleep(max(0.0, first_expiry - time.time()) + 4.0)  # past two expiries
        await call.frames_flow(30)
        assert len(call.since(call.rec_b, mark_b, RoomTokenWillExpire)) >= 2
        room = call.b.room_info
        assert room is not None and room.token_expires_at is not None
        assert room.token_expires_at > time.time()
        assert call.since(call.rec_b, mark_b, RoomStateChanged, PublisherStateUpdate) == []
        assert call.since(call.rec_a, mark_a, PlayerStateUpdate, RoomStreamUpdate) == []
    finally:
        await call.close()


async def test_token_expiry_mid_call_without_renewal_kicks_the_device_out(
    server_factory: ServerFactory,
) -> None:
    """A device given a fixed token (no secret to renew it with): warned, then kicked out
    with 1002056 when it expires; the others see its stream leave."""
    srv = await server_factory(token_warning_s=2.0)
    call = Call(srv, await device_port(srv), app_secret=None)
    try:
        await call.a.login_room("r", User("A"), RoomConfig(user_update=True))
        await call.b.login_room("r", User("B"), RoomConfig(token=srv.token("B", ttl=5)))
        await call.b.start_publishing("cam")
        await until(lambda: "cam" in call.a.streams)
        await call.a.start_playing("cam", call.sink)
        await until(lambda: call.decoded() >= 15, 15)
        await until(
            lambda: call.b.room_info is not None and call.b.room_state == RoomState.DISCONNECTED, 15
        )
        assert len(call.rec_b.of(RoomTokenWillExpire)) == 1
        changed = call.rec_b.of(RoomStateChanged)[-1]
        assert (changed.reason, changed.error_code) == (R.KICK_OUT, 1002056)
        assert call.rec_b.of(PublisherStateUpdate)[-1].state == PublisherState.NO_PUBLISH
        await until(lambda: call.a.player_state("cam") == PS.PLAY_REQUESTING)
        assert call.rec_a.of(RoomStreamUpdate)[-1].update_type == U.DELETE
    finally:
        await call.close()


@pytest.fixture
async def daemon_call(
    tmp_path: Path, srv: RunningServer, broker: Broker
) -> AsyncIterator[tuple[DaemonProcess, int]]:
    """The daemon as the device (its own server port, a 3 s give-up time)."""
    port = await device_port(srv)
    config = tmp_path / "edged.yaml"
    write_config(
        config, srv, broker, server_url=f"ws://127.0.0.1:{port}/ws", reconnect_give_up_s=3.0
    )
    daemon = DaemonProcess(config, tmp_path)
    await daemon.start()
    yield daemon, port
    await daemon.close()


async def play_the_device(srv: RunningServer, sink: AnalysisSink) -> tuple[Engine, EventRecorder]:
    viewer, rec = make_engine(srv)
    await viewer.login_room("porch", User("viewer"), RoomConfig(user_update=True))
    await until(lambda: f"{DEVICE}-cam" in viewer.streams, 20)
    await viewer.start_playing(f"{DEVICE}-cam", sink)
    await until(lambda: sink.video is not None and sink.video.stats().decoded >= 15, 20)
    return viewer, rec


async def event_where(client: aiomqtt.Client, check: Any, timeout: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if message.topic.matches(f"edged/{DEVICE}/event"):
                event = json.loads(message.payload)  # type: ignore[arg-type]
                if check(event):
                    return dict(event)
    raise AssertionError("unreachable")


def decoded(sink: AnalysisSink) -> int:
    return sink.video.stats().decoded if sink.video else 0


async def test_broker_restart_mid_call_leaves_the_call_alone(
    daemon_call: tuple[DaemonProcess, int], broker: Broker, srv: RunningServer
) -> None:
    """While the MQTT broker is away the call goes on; when it is back the daemon is
    online again with its retained state, and obeys commands."""
    sink = AnalysisSink()
    viewer, _ = await play_the_device(srv, sink)
    try:
        await broker.stop()
        during = decoded(sink)
        await until(lambda: decoded(sink) >= during + 60, 15)  # 2 s of video, no broker
        await broker.start()  # persistence is off: it forgot every retained message
        async with broker.client() as mqtt:
            await mqtt.subscribe(f"edged/{DEVICE}/#", qos=1)
            await state_where(mqtt, publishing)
            assert (await command(mqtt, "get_state"))["result"]["room"]["state"] == "CONNECTED"
            assert (await command(mqtt, "stop_publishing"))["ok"] is True
            await until(lambda: viewer.player_state(f"{DEVICE}-cam") == PS.PLAY_REQUESTING)
            assert (await command(mqtt, "start_publishing"))["ok"] is True
            await until(lambda: viewer.player_state(f"{DEVICE}-cam") == PS.PLAYING, 20)
    finally:
        await viewer.destroy()


async def test_daemon_past_the_give_up_time_logs_in_again_by_itself(
    daemon_call: tuple[DaemonProcess, int],
    broker: Broker,
    srv: RunningServer,
    faults: NetworkFaults,
) -> None:
    """Cut off longer than its give-up time, the daemon reports RECONNECT_FAILED with
    1002053 on its event topic, then DISCONNECTED (LOGIN_FAILED) while its supervisor
    retries; once the network is back it logs in and publishes again, and the viewer
    plays it again without doing anything."""
    _, port = daemon_call
    sink = AnalysisSink()
    async with broker.client() as mqtt:
        await mqtt.subscribe(STATE, qos=1)
        await mqtt.subscribe(f"edged/{DEVICE}/event", qos=1)
        await state_where(mqtt, publishing)
        viewer, rec = await play_the_device(srv, sink)
        try:
            faults.partition(udp=True, tcp_ports=[port])
            gave_up = await event_where(
                mqtt,
                lambda e: e["event"] == "room_state_changed" and e["reason"] == "RECONNECT_FAILED",
            )
            assert gave_up["error_code"] == 1002053
            # The supervisor keeps trying: each login fails while the network is down.
            failed = await state_where(mqtt, lambda s: s["room"]["state"] == "DISCONNECTED", 30)
            assert failed["room"]["reason"] == "LOGIN_FAILED"
            await until(lambda: viewer.player_state(f"{DEVICE}-cam") == PS.PLAY_REQUESTING, 15)
            faults.heal()
            await state_where(mqtt, publishing, 30)
            await until(lambda: viewer.player_state(f"{DEVICE}-cam") == PS.PLAYING, 30)
            start = decoded(sink)
            await until(lambda: decoded(sink) >= start + 30, 20)
            assert [e.update_type for e in rec.of(RoomUserUpdate)][-2:] == [U.DELETE, U.ADD]
        finally:
            await viewer.destroy()
