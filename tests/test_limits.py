"""Abuse limits and garbage: refused with an error, never disturbing other users."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.errors import ErrorCode
from edged.protocol import MAX_MESSAGE_BYTES, ProtocolError, decode_client
from edged.server.app import RoomServer
from edged.server.forwarded import FORWARDED_FOR, client_address, trusted_networks
from edged.server.session import Session
from edged.server.settings import Limits, ServerSettings
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer, ServerFactory, free_port
from protoclient import ProtoClient

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
MESSAGE_TYPES = [
    "login",
    "resume",
    "logout",
    "heartbeat",
    "publish",
    "unpublish",
    "play",
    "stop_play",
    "signal",
    "broadcast",
    "custom_command",
    "renew_token",
    "set_stream_extra_info",
    "nonsense",
]
message_like = st.dictionaries(
    st.sampled_from(
        [
            "type",
            "id",
            "app_id",
            "room_id",
            "user_id",
            "stream_id",
            "token",
            "link_id",
            "description",
            "candidate",
            "message",
            "to",
            "ack",
            "last_seq",
            "resume_token",
            "max_viewers",
            "extra",
        ]
    ),
    json_values,
).map(lambda d: json.dumps(d)) | st.builds(
    lambda t, rest: json.dumps({"type": t, **rest}),
    st.sampled_from(MESSAGE_TYPES),
    st.dictionaries(st.text(max_size=12), json_values, max_size=5),
)
garbage = (
    st.text(max_size=200)
    | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    | message_like
)


@settings(max_examples=800, deadline=None)
@given(garbage)
def test_decoder_returns_a_message_or_a_protocol_error(text: str) -> None:
    try:
        msg = decode_client(text)
    except ProtocolError as exc:
        assert exc.code in ErrorCode.__members__.values()
        assert 1000000 <= exc.code < 1008000
    else:
        assert msg.type in MESSAGE_TYPES


def test_decoder_refuses_deeply_nested_json() -> None:
    with pytest.raises(ProtocolError) as err:
        decode_client("[" * 100_000 + "]" * 100_000)
    assert err.value.code in (ErrorCode.MALFORMED_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(garbage, min_size=5, max_size=30))
def test_garbage_from_one_client_leaves_the_others_call_intact(
    garbage_batch: list[str],
) -> None:
    asyncio.run(_garbage_run(garbage_batch))


async def _garbage_run(batch: list[str]) -> None:
    server = RoomServer(ServerSettings(apps={APP: SECRET}, dev_mode=True))
    runner = web.AppRunner(server.make_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"ws://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as http:
        a = await ProtoClient(url, http).connect()
        b = await ProtoClient(url, http).connect()
        await a.login(
            app_id=APP, room_id="r", user_id="A", token=mint(SECRET, APP, "A", 60), user_update=True
        )
        await b.login(app_id=APP, room_id="r", user_id="B", token=mint(SECRET, APP, "B", 60))
        await b.ok("publish", stream_id="s")
        evil = await ProtoClient(url, http).connect()
        for text in batch:
            await evil.send_raw(text)
        await evil.send_raw(json.dumps({"type": "heartbeat", "id": 999_999}))
        # Its answer comes after the server has handled all of the garbage.
        await until(lambda: evil.ws.closed or any(m.get("id") == 999_999 for m in evil.unmatched))
        # The others' session is untouched: still listed, still talking.
        assert server.rooms.store.room(APP, "r") is not None
        await b.ok("broadcast", message="still here")
        seen = [await a.next() for _ in range(3)]
        assert [m["type"] for m in seen] == ["room_user_update", "room_stream_update", "broadcast"]
        for c in (a, b, evil):
            await c.close()
    await runner.cleanup()


async def test_oversized_message_gets_an_error_and_the_connection_lives(
    srv: RunningServer,
) -> None:
    a = await srv.user("A")
    big = json.dumps({"type": "broadcast", "id": 77, "message": "x" * MAX_MESSAGE_BYTES})
    await a.send_raw(big)
    pushed = await a.pushes_before_heartbeat()  # the answer to ``big`` comes first
    errors = [m for m in a.unmatched if m.get("id") == 77] or pushed
    assert errors[0]["error"]["code"] == ErrorCode.MESSAGE_TOO_LARGE
    await a.ok("heartbeat")


async def test_binary_frames_are_refused(srv: RunningServer) -> None:
    a = await srv.user("A")
    assert a.ws is not None
    await a.ws.send_bytes(b"\x00\x01")
    err = await a.next_of("reply")
    assert err["error"]["code"] == ErrorCode.MALFORMED_MESSAGE
    await a.ok("heartbeat")


async def test_unknown_type_and_wrong_field_types_get_error_replies(srv: RunningServer) -> None:
    a = await srv.user("A")
    assert (await a.request("teleport"))["error"]["code"] == ErrorCode.UNKNOWN_MESSAGE
    reply = await a.request("publish", stream_id=42)
    assert reply["error"]["code"] == ErrorCode.STREAM_ID_INVALID
    reply = await a.request("heartbeat", surprise=True)
    assert reply["error"]["code"] == ErrorCode.MALFORMED_MESSAGE


async def test_over_rate_messages_are_refused_and_others_unaffected(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(limits=Limits(messages_per_s=5, message_burst=10))
    flood = await srv.user("F")
    calm = await srv.user("C")
    for _ in range(40):
        await flood.send_raw(json.dumps({"type": "heartbeat"}))
    # Heartbeats without an id get no reply: every error pushed is a refusal.
    limited: list[dict[str, Any]] = []
    while len(limited) < 25:
        if "error" in (pushed := await flood.next()):
            limited.append(pushed)
    assert all(m["error"]["code"] == ErrorCode.RATE_LIMITED for m in limited), limited
    await calm.ok("heartbeat")
    await calm.ok("publish", stream_id="calm")


async def test_per_address_connection_limit(server_factory: ServerFactory) -> None:
    srv = await server_factory(limits=Limits(max_connections_per_ip=2))
    await srv.client()
    await srv.client()
    third = await srv.client()
    refused = await third.next()
    assert refused["error"]["code"] == ErrorCode.TOO_MANY_CONNECTIONS


async def test_behind_a_trusted_proxy_the_limits_count_the_forwarded_client(
    server_factory: ServerFactory,
) -> None:
    """A balancer in front (here, every client's own 127.0.0.1): its X-Forwarded-For names
    the client, so two clients behind it each get their own limit; an address a client
    puts in the header itself, left of what the proxy appended, changes nothing."""
    srv = await server_factory(
        limits=Limits(max_connections_per_ip=2), trusted_proxies=trusted_networks(["127.0.0.1"])
    )

    def via_proxy(client: str) -> dict[str, str]:
        return {FORWARDED_FOR: f"203.0.113.{client}, 198.51.100.7"}  # spoofed, then real

    for _ in range(2):
        await srv.client(via_proxy("1"))
    other = await srv.client({FORWARDED_FOR: "198.51.100.8"})
    await other.login(app_id=APP, room_id="r1", user_id="other", token=srv.token("other"))
    third = await srv.client(via_proxy("2"))  # the same client as the first two
    assert (await third.next())["error"]["code"] == ErrorCode.TOO_MANY_CONNECTIONS


async def test_the_forwarded_header_is_ignored_from_a_peer_not_trusted(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(
        limits=Limits(max_connections_per_ip=2), trusted_proxies=trusted_networks(["10.0.0.0/8"])
    )
    for i in range(2):
        await srv.client({FORWARDED_FOR: f"198.51.100.{i}"})
    third = await srv.client({FORWARDED_FOR: "198.51.100.9"})
    assert (await third.next())["error"]["code"] == ErrorCode.TOO_MANY_CONNECTIONS


def test_the_client_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy() -> None:
    trusted = trusted_networks(["10.0.0.0/8", "fd00::/8"])
    assert client_address("10.0.0.2", "1.1.1.1, 2.2.2.2, 10.0.0.9", trusted) == "2.2.2.2"
    assert client_address("10.0.0.2", "10.0.0.3, 10.0.0.9", trusted) == "10.0.0.3"
    assert client_address("fd00::1", "2001:db8::5", trusted) == "2001:db8::5"
    assert client_address("::ffff:10.0.0.2", "2.2.2.2", trusted) == "2.2.2.2"
    assert client_address("10.0.0.2", None, trusted) == "10.0.0.2"
    assert client_address("192.0.2.1", "2.2.2.2", trusted) == "192.0.2.1"
    assert client_address(None, "2.2.2.2", trusted) == "unknown"
    with pytest.raises(ValueError, match="not an IP address or network: 'balancer'"):
        trusted_networks(["balancer"])


async def test_play_limits_and_unknown_links(srv: RunningServer) -> None:
    pub = await srv.user("P", notify=False)
    await pub.ok("publish", stream_id="capped", max_viewers=1)
    v1 = await srv.user("V1", notify=False)
    v2 = await srv.user("V2", notify=False)
    await v1.ok("play", stream_id="capped")
    assert (await v2.request("play", stream_id="capped"))["error"]["code"] == 1004020
    assert (await v1.request("play", stream_id="capped"))["error"]["code"] == 1004021
    assert (await v2.request("play", stream_id="nothing"))["error"]["code"] == 1004002
    assert (await v2.request("stop_play", stream_id="capped"))["error"]["code"] == 1004022
    bad = await v2.request("signal", link_id="nope", description={"type": "offer", "sdp": "v=0"})
    assert bad["error"]["code"] == 1004050
    # When the viewer stops, the slot is free again.
    await v1.ok("stop_play", stream_id="capped")
    await v2.ok("play", stream_id="capped")


async def test_signals_are_relayed_between_the_ends_of_a_link(srv: RunningServer) -> None:
    pub = await srv.user("P", notify=False)
    viewer = await srv.user("V", notify=False)
    await pub.ok("publish", stream_id="s1")
    await viewer.next_of("room_stream_update")
    link_id = (await viewer.ok("play", stream_id="s1"))["link_id"]
    assert (await pub.next_of("link_open"))["link_id"] == link_id
    await pub.ok("signal", link_id=link_id, description={"type": "offer", "sdp": "v=0 offer"})
    offer = await viewer.next_of("signal")
    assert (offer["description"]["sdp"], offer["user"]["user_id"]) == ("v=0 offer", "P")
    await viewer.ok("signal", link_id=link_id, description={"type": "answer", "sdp": "v=0 a"})
    candidate = {
        "candidate": "candidate:1 1 udp 1 host.local 5000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await viewer.ok("signal", link_id=link_id, candidate=candidate)
    assert (await pub.next_of("signal"))["description"]["type"] == "answer"
    assert (await pub.next_of("signal"))["candidate"] == candidate
    # A third user cannot inject into the link.
    intruder = await srv.user("I", notify=False)
    await intruder.pushes_before_heartbeat()
    reply = await intruder.request("signal", link_id=link_id, candidate=candidate)
    assert reply["error"]["code"] == 1004050


async def test_logs_never_contain_tokens_or_secrets(
    srv: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = srv.token("A")
    a = await srv.client()
    await a.login(app_id=APP, room_id="r1", user_id="A", token=token)
    await a.ok("renew_token", token=srv.token("A", ttl=900))
    await a.request("login", app_id=APP, room_id="r1", user_id="A", token=token)
    bad = await srv.client()
    await bad.request("login", app_id=APP, room_id="r1", user_id="B", token=token + "x")
    await a.ok("logout")
    text = "\n".join(r.getMessage() + repr(getattr(r, "edged_fields", "")) for r in caplog.records)
    assert "login" in text
    assert token.split(".")[2] not in text and SECRET not in text


def test_a_session_too_far_behind_is_a_slow_consumer() -> None:
    session = Session("s", "r", APP, "room", None, False, None, replay_limit=4)  # type: ignore[arg-type]
    assert all(session.push('{"type":"x"}') for _ in range(4))
    assert not session.push('{"type":"x"}')  # a fifth unsent message overflows
    for _ in range(4):
        assert session.next_unsent() is not None
    session.ack(4)
    assert session.push('{"type":"x"}')
    assert session.can_replay_from(4) and not session.can_replay_from(1)


async def test_a_socket_that_never_logs_in_is_closed(server_factory: ServerFactory) -> None:
    """Opening a socket needs no token: one that does not log in in time is closed, so
    idle sockets cannot hold the connection slots."""
    srv = await server_factory(limits=Limits(login_timeout_s=0.5))
    idle = await srv.client()
    member = await srv.user("M", notify=False)
    refused = await idle.next(5)
    assert refused["error"]["code"] == ErrorCode.LOGIN_TIMEOUT
    await until(lambda: idle.ws is None or idle.ws.closed, 5)
    await asyncio.sleep(0.6)  # past the timeout: a logged-in socket stays
    await member.ok("heartbeat")
    assert len(srv.server.connections) == 1
