"""Rooms, users and streams: the call model's rules as other users see them."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import APP, RunningServer, ServerFactory


@pytest.fixture
def server_factory(store_server_factory: ServerFactory) -> ServerFactory:
    """Every rule here holds on one in-memory node and across three nodes sharing Redis,
    with the clients spread over the nodes in turn."""
    return store_server_factory


def ids(msg: dict[str, object], key: str = "users") -> list[str]:
    items = msg[key]
    assert isinstance(items, list)
    field = "user_id" if key == "users" else "stream_id"
    return [i[field] for i in items]


async def test_reference_trace_as_seen_by_the_first_user(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B", notify=False)
    joined = await a.next_of("room_user_update")
    assert (joined["update_type"], ids(joined)) == (0, ["B"])

    await b.ok("publish", stream_id="s1")
    added = await a.next_of("room_stream_update")
    assert (added["update_type"], ids(added, "streams")) == (0, ["s1"])
    assert added["streams"][0]["user"]["user_id"] == "B"

    link_id = (await a.ok("play", stream_id="s1"))["link_id"]
    opened = await b.next_of("link_open")
    assert (opened["link_id"], opened["stream_id"], opened["user"]["user_id"]) == (
        link_id,
        "s1",
        "A",
    )

    await b.ok("logout")
    deleted = await a.next_of("room_stream_update")
    assert (deleted["update_type"], ids(deleted, "streams"), deleted["reason"]) == (
        1,
        ["s1"],
        "stopped",
    )
    closed = await a.next_of("link_closed")
    assert (closed["link_id"], closed["reason"]) == (link_id, "stream_deleted")
    left = await a.next_of("room_user_update")
    assert (left["update_type"], ids(left)) == (1, ["B"])
    assert await a.pushes_before_heartbeat() == []


async def test_existing_users_and_streams_arrive_as_add_after_login(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="cam", extra_info="front door")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")

    c = await srv.user("C")
    users = await c.next_of("room_user_update")
    assert (users["update_type"], sorted(ids(users))) == (0, ["A", "B"])
    streams = await c.next_of("room_stream_update")
    assert streams["update_type"] == 0
    assert streams["streams"][0]["extra_info"] == "front door"


async def test_user_updates_only_go_to_users_who_asked(srv: RunningServer) -> None:
    quiet = await srv.user("A", notify=False)
    await srv.user("B")
    await srv.user("C")
    assert await quiet.pushes_before_heartbeat() == []


async def test_nothing_crosses_rooms(srv: RunningServer) -> None:
    a = await srv.user("A", room="r1")
    b = await srv.user("B", room="r2")
    await b.ok("publish", stream_id="s-r2")
    await b.ok("broadcast", message="hello r2")
    assert await a.pushes_before_heartbeat() == []
    reply = await a.request("play", stream_id="s-r2")
    assert reply["error"]["code"] == 1004002


async def test_second_login_of_a_user_kicks_out_the_first(srv: RunningServer) -> None:
    a = await srv.user("A")
    b1 = await srv.user("B", notify=False)
    await b1.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")

    b2 = await srv.user("B")
    kicked = await b1.next_of("kicked_out")
    assert kicked["code"] == 1002050
    deleted = await a.next_of("room_stream_update")
    assert (deleted["update_type"], deleted["reason"]) == (1, "repeated_login")
    left = await a.next_of("room_user_update")
    assert (left["update_type"], ids(left)) == (1, ["B"])
    back = await a.next_of("room_user_update")
    assert (back["update_type"], ids(back)) == (0, ["B"])
    # The new session owns the user; the stream id is free again.
    await b2.ok("publish", stream_id="s1")


async def test_a_stream_id_is_unique_within_the_app(srv: RunningServer) -> None:
    b = await srv.user("B", room="r1")
    c = await srv.user("C", room="r2")
    await b.ok("publish", stream_id="s1")
    reply = await c.request("publish", stream_id="s1")
    assert reply["error"]["code"] == 1003028
    again = await b.request("publish", stream_id="s1")
    assert again["error"]["code"] == 1003030


async def test_room_member_limit_refuses_one_more(srv: RunningServer) -> None:
    a = await srv.client()
    await a.login(app_id=APP, room_id="small", user_id="A", token=srv.token("A"), max_members=2)
    await srv.user("B", room="small")
    c = await srv.client()
    reply = await c.request("login", app_id=APP, room_id="small", user_id="C", token=srv.token("C"))
    assert reply["error"]["code"] == 1002034
    # The room is not disturbed, and the same user logging in again is not "one more".
    again = await srv.client()
    await again.login(app_id=APP, room_id="small", user_id="B", token=srv.token("B"))


async def test_silent_user_is_removed_after_heartbeat_timeout(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")

    async def keep_alive() -> None:
        while True:
            await a.ok("heartbeat", ack=a.last_seq)
            await asyncio.sleep(0.3)  # A keeps its session while B's times out

    pinger = asyncio.create_task(keep_alive())
    try:
        await b.drop()  # B vanishes without logging out
        deleted = await a.next_of("room_stream_update", timeout=6)
        assert (deleted["update_type"], deleted["reason"]) == (1, "heartbeat_timeout")
        left = await a.next_of("room_user_update")
        assert (left["update_type"], ids(left)) == (1, ["B"])
    finally:
        pinger.cancel()


async def test_heartbeat_keeps_a_session_past_the_timeout(srv: RunningServer) -> None:
    a = await srv.user("A")
    for _ in range(10):  # 3 s, longer than the 2 s timeout
        await a.ok("heartbeat", ack=a.last_seq)
        await asyncio.sleep(0.3)
    reply = await a.request("publish", stream_id="still-here")
    assert reply["ok"]


async def test_resume_within_timeout_is_silent_to_others_and_replays(
    srv: RunningServer,
) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")
    token, last_seq = b.login_result["resume_token"], b.last_seq

    await b.drop()
    await a.ok("broadcast", message="while you were away")

    b2 = await srv.client()
    b2.last_seq = last_seq
    result = await b2.ok("resume", resume_token=token, last_seq=last_seq)
    assert result["resumed"] is True
    missed = await b2.next_of("broadcast")
    assert missed["message"] == "while you were away"
    assert await a.pushes_before_heartbeat() == []  # no DELETE, no ADD
    # The stream is still listed: a newcomer sees it.
    c = await srv.user("C")
    await c.next_of("room_user_update")
    assert ids(await c.next_of("room_stream_update"), "streams") == ["s1"]


async def test_resume_after_timeout_fails_with_its_code(srv: RunningServer) -> None:
    b = await srv.user("B")
    token = b.login_result["resume_token"]
    await b.drop()
    # The server's clock, past the heartbeat timeout of B's last message.
    srv.server.rooms.sweep(now=time.monotonic() + srv.settings.heartbeat_timeout_s + 0.1)
    b2 = await srv.client()
    reply = await b2.request("resume", resume_token=token, last_seq=0)
    assert reply["error"]["code"] == 1002054


async def test_logout_deletes_stream_before_user(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="s1")
    await b.ok("publish", stream_id="s2")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")
    await a.next_of("room_stream_update")
    await b.ok("logout")
    order = [await a.next() for _ in range(3)]
    assert [(m["type"], m["update_type"]) for m in order] == [
        ("room_stream_update", 1),
        ("room_stream_update", 1),
        ("room_user_update", 1),
    ]


async def test_unpublish_deletes_with_reason_stopped(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")
    await b.ok("unpublish", stream_id="s1")
    deleted = await a.next_of("room_stream_update")
    assert (deleted["update_type"], deleted["reason"]) == (1, "stopped")
    assert (await b.request("unpublish", stream_id="s1"))["error"]["code"] == 1003031


async def test_stream_extra_info_update_reaches_the_others(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")
    await b.ok("set_stream_extra_info", stream_id="s1", extra_info="night mode")
    update = await a.next_of("stream_extra_info_update")
    assert update["streams"][0]["extra_info"] == "night mode"
    too_long = await b.request("set_stream_extra_info", stream_id="s1", extra_info="x" * 2000)
    assert too_long["error"]["code"] == 1003029


async def test_broadcast_and_custom_command(srv: RunningServer) -> None:
    a = await srv.user("A")
    b = await srv.user("B")
    c = await srv.user("C")
    for x in (a, b, c):
        await x.pushes_before_heartbeat()
    sent = await a.ok("broadcast", message="hi all")
    for other in (b, c):
        got = await other.next_of("broadcast")
        assert (got["message"], got["user"]["user_id"], got["message_id"]) == (
            "hi all",
            "A",
            sent["message_id"],
        )
    await a.ok("custom_command", to=["C"], command="ring")
    assert (await c.next_of("custom_command"))["command"] == "ring"
    assert await b.pushes_before_heartbeat() == []
    nobody = await a.request("custom_command", to=["Z"], command="ring")
    assert nobody["error"]["code"] == 1002045


async def test_operations_before_login_are_refused(srv: RunningServer) -> None:
    c = await srv.client()
    for mtype, fields in [
        ("publish", {"stream_id": "s"}),
        ("play", {"stream_id": "s"}),
        ("heartbeat", {}),
        ("logout", {}),
    ]:
        reply = await c.request(mtype, **fields)
        assert reply["error"]["code"] == 1000002, mtype


async def test_login_twice_on_one_connection_is_refused(srv: RunningServer) -> None:
    a = await srv.user("A")
    reply = await a.request("login", app_id=APP, room_id="r1", user_id="A2", token=srv.token("A2"))
    assert reply["error"]["code"] == 1002032


async def test_empty_and_malformed_ids_have_their_own_codes(srv: RunningServer) -> None:
    c = await srv.client()
    cases = [
        ({"user_id": ""}, 1002005),
        ({"room_id": "no spaces"}, 1002002),
        ({"room_id": "r" * 200}, 1002002),
        ({"app_id": ""}, 1001002),
    ]
    for override, code in cases:
        fields = {"app_id": APP, "room_id": "r1", "user_id": "u", **override}
        reply = await c.request("login", **fields)
        assert reply["error"]["code"] == code, override


async def test_server_health_counts_rooms_users_streams(srv: RunningServer) -> None:
    await srv.user("A", room="r1")
    b = await srv.user("B", room="r2")
    await b.ok("publish", stream_id="s")
    totals = [0, 0, 0]
    nodes = set()
    for ws_url in srv.urls or [srv.url]:  # with several nodes, each counts what it runs
        url = ws_url.replace("ws://", "http://").replace("/ws", "/healthz")
        async with srv.http.get(url) as resp:
            health = await resp.json()
        for i, key in enumerate(("rooms", "users", "streams")):
            totals[i] += health[key]
        assert health["store"]["ok"] is True
        assert health["store"]["kind"] == ("redis" if srv.urls else "memory")
        nodes.add(health["node"])
    assert totals == [2, 2, 1]
    assert len(nodes) == len(srv.urls or [srv.url])


async def test_logged_out_user_leaves_no_room_behind(server_factory: ServerFactory) -> None:
    srv = await server_factory()
    a = await srv.user("A")
    await a.ok("publish", stream_id="s1")
    await a.ok("logout")
    assert srv.server.rooms.store.count() == (0, 0, 0)
    # The connection may log in again after logging out.
    await a.login(app_id=APP, room_id="r9", user_id="A", token=srv.token("A"))
