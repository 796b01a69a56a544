"""What the server sends is encoded once and stays the text the protocol defines."""

from __future__ import annotations

import asyncio
import gc
import json
import re

import pytest

from edged.protocol import (
    IceServer,
    LoginResult,
    Reply,
    StreamInfo,
    UserInfo,
    encode,
    encode_ok_reply,
)
from edged.server.run import GC_YOUNG_THRESHOLD, tune_gc
from edged.server.session import Session

from conftest import APP, SECRET, RunningServer, ServerFactory


@pytest.fixture
def server_factory(store_server_factory: ServerFactory) -> ServerFactory:
    """Every rule here holds on one in-memory node and across three nodes sharing Redis,
    with the clients spread over the nodes in turn."""
    return store_server_factory


SEQ = re.compile(r'^\{"seq":(\d+),')


def _outbox_texts(srv: RunningServer, user_id: str) -> list[str]:
    rooms = srv.server.rooms
    session = rooms.sessions[rooms.store.user_session(APP, user_id) or ""]
    return [text for _seq, text in session.outbox]


async def test_a_room_event_is_the_same_text_for_everyone_but_its_seq(
    srv: RunningServer,
) -> None:
    """One encoding per event: each recipient's copy differs only in its own ``seq``."""
    a = await srv.user("A")
    b = await srv.user("B")
    c = await srv.user("C", notify=False)
    await a.ok("publish", stream_id="cam")  # gives B and C different seq counts
    for x in (a, b, c):
        await x.pushes_before_heartbeat()
    await a.ok("broadcast", message="hello")
    got_b, got_c = await b.next_of("broadcast"), await c.next_of("broadcast")
    assert got_b["seq"] != got_c["seq"]
    assert got_b["seq"] == b.last_seq and got_c["seq"] == c.last_seq
    texts = [_outbox_texts(srv, u)[-1] for u in ("B", "C")]
    bodies = [SEQ.sub("{", t) for t in texts]
    assert bodies[0] == bodies[1]
    assert [int(SEQ.match(t).group(1)) for t in texts] == [b.last_seq, c.last_seq]  # type: ignore[union-attr]
    assert json.loads(bodies[0]) == {k: v for k, v in got_b.items() if k != "seq"}


def test_push_prefixes_each_sessions_own_seq() -> None:
    sessions = [
        Session(
            session_id=f"s{i}",
            resume_token=f"r{i}",
            app_id=APP,
            room_id="r1",
            user=UserInfo(user_id=f"u{i}"),
            user_update=True,
            claims=None,
            replay_limit=8,
        )
        for i in range(2)
    ]
    sessions[1].push('{"type":"x"}')
    body = '{"type":"broadcast","message":"m"}'
    for s in sessions:
        assert s.push(body)
    assert [s.outbox[-1] for s in sessions] == [
        (1, '{"seq":1,"type":"broadcast","message":"m"}'),
        (2, '{"seq":2,"type":"broadcast","message":"m"}'),
    ]


@pytest.mark.parametrize("request_id", [None, 0, 7, 2**53])
@pytest.mark.parametrize("with_everything", [False, True])
def test_login_reply_text_is_that_of_the_reply_model(
    request_id: int | None, with_everything: bool
) -> None:
    user = UserInfo(user_id="door", user_name='Front "door" é')
    result = LoginResult(
        session_id="5d0c",
        resume_token="q1H",
        room_id="r1",
        user=user,
        heartbeat_interval_s=10.0,
        heartbeat_timeout_s=30.5,
        token_expires_at=1795000000.25 if with_everything else None,
        ice_servers=[IceServer(urls=["stun:x"]), IceServer(urls=["turn:y"], username="u")]
        if with_everything
        else [],
        server_version="0.1.0",
        resumed=with_everything,
        users=[UserInfo(user_id="A")] if with_everything else [],
        streams=[StreamInfo(stream_id="s", user=user, extra_info="x")] if with_everything else [],
    )
    reference = encode(Reply(id=request_id, ok=True, result=result.model_dump(exclude_none=True)))
    assert encode_ok_reply(request_id, result) == reference


async def test_a_session_keeps_one_token_timer_through_warning_and_renewal(
    server_factory: object,
) -> None:
    from edged.tokens import mint

    srv: RunningServer = await server_factory(token_warning_s=2.0)  # type: ignore[operator]
    c = await srv.client()
    await c.login(app_id=APP, room_id="r1", user_id="u", token=mint(SECRET, APP, "u", 3))
    session = next(iter(srv.server.rooms.sessions.values()))
    first = session.timer
    assert first is not None
    await c.next_of("token_will_expire", timeout=3)
    assert session.timer is not None and session.timer is not first  # now the expiry
    await c.ok("renew_token", token=mint(SECRET, APP, "u", 60))
    assert (
        session.timer is not None and session.timer.when() > asyncio.get_running_loop().time() + 20
    )
    await c.ok("logout")
    assert session.timer is None


def test_tune_gc_raises_the_young_threshold_and_keeps_a_higher_one() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(GC_YOUNG_THRESHOLD * 2, 5, 5)
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD * 2, 5, 5)
    finally:
        gc.set_threshold(*saved)
