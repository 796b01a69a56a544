"""What a logged-in attacker cannot do: reach another app, or touch others' links.

The refusals of tokens (wrong app, room, user, privilege, expired, forged) are in
tests/test_tokens.py; limits, garbage and slow consumers in tests/test_limits.py. Here:
apps are sealed from each other, and a property-based run of well-formed but hostile
messages from a logged-in client never gets past its own session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.engine.engine import Engine
from edged.errors import ErrorCode
from edged.model import PublisherState, User
from edged.server.app import SERVICE_KEY
from edged.server.run import start_server
from edged.server.settings import ServerSettings
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer, ServerFactory, free_port
from enginekit import AnalysisSink, make_engine
from protoclient import ProtoClient

OTHER_APP = "otherapp"
OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"
KNOWN_CODES = {int(code) for code in ErrorCode}


async def test_apps_are_sealed_from_each_other(server_factory: ServerFactory) -> None:
    """Same room and stream names in two apps: neither sees, plays or talks to the other."""
    srv = await server_factory(apps={APP: SECRET, OTHER_APP: OTHER_SECRET})
    ours = await srv.client()
    await ours.login(
        app_id=APP, room_id="r", user_id="A", token=mint(SECRET, APP, "A", 60), user_update=True
    )
    theirs = await srv.client()
    await theirs.login(
        app_id=OTHER_APP,
        room_id="r",
        user_id="B",
        token=mint(OTHER_SECRET, OTHER_APP, "B", 60),
        user_update=True,
    )
    await theirs.ok("publish", stream_id="cam")
    await theirs.ok("broadcast", message="for my app only")
    assert await ours.pushes_before_heartbeat() == []  # no user, stream or broadcast crossed over
    assert (await ours.request("play", stream_id="cam"))["error"]["code"] == 1004002
    # A token of one app, however valid, opens nothing in the other.
    intruder = await srv.client()
    reply = await intruder.request(
        "login", app_id=APP, room_id="r", user_id="B", token=mint(OTHER_SECRET, OTHER_APP, "B", 60)
    )
    assert reply["error"]["code"] == 1002038
    reply = await intruder.request(
        "login", app_id=APP, room_id="r", user_id="B", token=mint(OTHER_SECRET, APP, "B", 60)
    )
    assert reply["error"]["code"] == 1002033  # signed with the other app's secret
    assert srv.server.rooms.store.user_session(APP, "B") is None


USERS = st.sampled_from(["A", "B", "evil", "nobody"])
STREAMS = st.sampled_from(["s", "evil-s", "missing"])
TEXT = st.text(max_size=40)
SDP = st.fixed_dictionaries({"type": st.sampled_from(["offer", "answer", "pranswer"]), "sdp": TEXT})
CANDIDATE = st.fixed_dictionaries(
    {"candidate": TEXT, "sdpMid": st.just("0"), "sdpMLineIndex": st.just(0)}
)


def hostile_messages(link_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed messages of every type, aimed at the others' users, streams, links."""
    links = st.sampled_from([*link_ids, "bogus-link"])
    return st.one_of(
        st.builds(
            lambda s, n: {"type": "publish", "stream_id": s, "max_viewers": n},
            STREAMS,
            st.integers(0, 3),
        ),
        st.builds(lambda s: {"type": "unpublish", "stream_id": s}, STREAMS),
        st.builds(lambda s: {"type": "play", "stream_id": s}, STREAMS),
        st.builds(lambda s: {"type": "stop_play", "stream_id": s}, STREAMS),
        st.builds(
            lambda s, t: {"type": "set_stream_extra_info", "stream_id": s, "extra_info": t},
            STREAMS,
            TEXT,
        ),
        st.builds(
            lambda link, s, d, c: {
                "type": "signal",
                "link_id": link,
                "stream_id": s,
                "description": d,
                "candidate": c,
            },
            links,
            STREAMS,
            st.none() | SDP,
            st.none() | CANDIDATE,
        ),
        st.builds(lambda t: {"type": "broadcast", "message": t}, TEXT),
        st.builds(
            lambda to, t: {"type": "custom_command", "to": to, "command": t},
            st.lists(USERS, max_size=3),
            TEXT,
        ),
        st.builds(lambda u: {"type": "renew_token", "token": mint(SECRET, APP, u, 60)}, USERS),
        st.builds(
            lambda u: {
                "type": "login",
                "app_id": APP,
                "room_id": "r",
                "user_id": u,
                "token": mint(SECRET, APP, "evil", 60),
            },
            USERS,
        ),
        st.builds(lambda n: {"type": "heartbeat", "ack": n}, st.integers(0, 10**9)),
        st.builds(
            lambda n: {"type": "resume", "resume_token": "x" * 20, "last_seq": n},
            st.integers(0, 10**6),
        ),
    )


@st.composite
def hostile_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    # The A->B link id is unknown before the server runs: "LINK" stands for it.
    return draw(st.lists(hostile_messages(["LINK"]), min_size=3, max_size=25))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_batches())
def test_a_hostile_member_never_reaches_past_its_own_session(batch: list[dict[str, Any]]) -> None:
    errors = _ErrorRecords()
    logger = logging.getLogger("edged")
    logger.addHandler(errors)
    try:
        asyncio.run(_hostile_run(batch))
    finally:
        logger.removeHandler(errors)
    assert errors.records == []  # no handler crashed on the server


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


async def _hostile_run(batch: list[dict[str, Any]]) -> None:
    port = free_port()
    runner = await start_server(ServerSettings(apps={APP: SECRET}, port=port))
    rooms = runner.app[SERVICE_KEY]
    url = f"ws://127.0.0.1:{port}/ws"
    async with aiohttp.ClientSession() as http:
        a, b, evil = [await ProtoClient(url, http).connect() for _ in range(3)]
        for client, user in ((a, "A"), (b, "B"), (evil, "evil")):
            await client.login(
                app_id=APP, room_id="r", user_id=user, token=mint(SECRET, APP, user, 60)
            )
        await b.ok("publish", stream_id="s")
        link = (await a.ok("play", stream_id="s"))["link_id"]
        assert (await b.next_of("link_open"))["link_id"] == link
        for message in batch:
            fields = json.loads(json.dumps(message).replace('"LINK"', json.dumps(link)))
            kind = fields.pop("type")
            reply = await evil.request(kind, **fields)
            if not reply["ok"]:
                assert reply["error"]["code"] in KNOWN_CODES, reply
            if kind == "signal" and fields["link_id"] == link:  # someone else's link
                assert not reply["ok"]
                assert reply["error"]["code"] in (
                    ErrorCode.LINK_NOT_FOUND,
                    ErrorCode.MALFORMED_MESSAGE,  # no such description type
                )
        # The A<-B call is untouched: same link, nothing relayed into it by evil,
        # both sessions alive and talking.
        for client in (a, b):
            got = await client.pushes_before_heartbeat()
            assert not [m for m in got if m["type"] == "kicked_out"]
            assert not [m for m in got if m.get("link_id") == link], got
        assert rooms.store.user_session(APP, "A") is not None
        assert rooms.store.user_session(APP, "B") is not None
        await a.ok("signal", link_id=link, candidate={"candidate": "", "sdpMid": "0"})
        relayed = await b.next_of("signal")
        assert relayed["link_id"] == link
        for client in (a, b, evil):
            await client.close()
    await runner.cleanup()


BAD_ANSWERS = [
    "",
    "v=0",
    "not an sdp at all \x00\xff",
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\na=fingerprint:sha-256 00\r\n",
    "v=0\r\n" + "m=audio 9 RTP/AVP 0\r\n" * 500,
]
BAD_CANDIDATES = [
    "candidate:1 1 UDP 1 999.1.1.1 99999 typ host",
    "candidate:garbage",
    "candidate:1 1 UDP 2130706431 203.0.113.7 9 typ host",  # outside: never reached
]


@pytest.mark.netns
@pytest.mark.parametrize("answer", BAD_ANSWERS, ids=lambda a: f"{len(a)}B")
async def test_a_viewers_bad_answer_costs_only_its_own_link(
    srv: RunningServer, answer: str
) -> None:
    """A member who plays the device's stream and answers with garbage loses its link;
    the device keeps publishing and the honest viewer keeps decoding."""
    device, _ = make_engine(srv)
    viewer, _ = make_engine(srv)
    sink = AnalysisSink()
    async with device, viewer:
        await device.login_room("r", User("B"))
        await device.start_publishing("cam")
        await viewer.login_room("r", User("A"))
        await viewer.start_playing("cam", sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 10, 15)
        evil = await srv.user("evil", room="r", notify=False)
        link = (await evil.ok("play", stream_id="cam"))["link_id"]
        offer = await _next_signal(evil)
        assert offer["description"]["type"] == "offer"
        await until(lambda: viewers(device) == 2)
        for candidate in BAD_CANDIDATES:
            await evil.ok("signal", link_id=link, candidate={"candidate": candidate, "sdpMid": "0"})
        await evil.ok("signal", link_id=link, description={"type": "answer", "sdp": answer})
        await until(lambda: viewers(device) == 1)
        decoded = sink.video.stats().decoded if sink.video else 0
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= decoded + 30)
        assert device.publisher_state("cam") == PublisherState.PUBLISHING


def viewers(engine: Engine) -> int:
    publisher = engine.publishers.get("cam")
    return publisher.viewer_count if publisher else -1


async def _next_of_type(client: ProtoClient, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await client.next(10)
            if msg["type"] == kind:
                return msg


async def _next_signal(client: ProtoClient) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await _next_of_type(client, "signal")
            if msg.get("description"):
                return msg
