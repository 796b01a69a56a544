"""Calls through a real coturn with the time-limited credentials the room server mints.

The room server holds coturn's shared secret and hands each client credentials of its
own with its login (docs/configuration.md, "TURN"). A firewall rule in the namespace
leaves the peers no path to each other but through coturn's relay ports, as on two
networks with no route between them.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edged.engine.events import EventRecorder, PlayerStateUpdate
from edged.errors import ErrorCode
from edged.model import PlayerState, User
from edged.server import turn as turn_module
from edged.server.turn import TurnSettings, credential_expiry, turn_credentials
from edged.testing.coturn import RELAY_PORTS, TURN_ADDRESS, Coturn, installed
from edged.testing.faults import NetworkFaults
from edged.testing.waiting import until

from conftest import RunningServer, ServerFactory
from enginekit import AnalysisSink, make_engine

pytestmark = pytest.mark.netns
TURN_SECRET = "coturn-shared-secret-of-the-tests"


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    if not installed():
        pytest.fail("turnserver is missing: apt-get install coturn", pytrace=False)
    server = Coturn(tmp_path, TURN_SECRET)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def turn_server(factory: ServerFactory, coturn: Coturn, secret: str) -> RunningServer:
    return await factory(turn=TurnSettings([coturn.url], secret))


def test_credentials_follow_the_rest_scheme_coturn_checks() -> None:
    username, password = turn_credentials("secret", "alice", 1_700_000_000)
    assert username == "1700000000:alice"
    # base64(HMAC-SHA1("secret", "1700000000:alice")), as coturn computes it
    assert password == "d8soP47RbdIKLDUOpnJPVQyq5Ts="
    assert credential_expiry(username) == 1_700_000_000


async def test_the_login_reply_carries_credentials_that_end_with_the_token_not_the_secret(
    server_factory: ServerFactory, coturn: Coturn
) -> None:
    srv = await turn_server(server_factory, coturn, TURN_SECRET)
    client = await srv.user("u")
    (turn,) = client.login_result["ice_servers"]
    assert turn["urls"] == [coturn.url]
    expires = credential_expiry(turn["username"])
    assert expires is not None and expires >= time.time() + 3000  # at least the minimum
    assert turn["username"].endswith(":u") and TURN_SECRET not in str(client.login_result)


@contextlib.asynccontextmanager
async def call_with_turn_as_the_only_path(
    server_factory: ServerFactory, coturn: Coturn, secret: str
) -> AsyncIterator[tuple[EventRecorder, AnalysisSink]]:
    """The board publishing and a viewer playing it, with no path between them but
    coturn's ports; the viewer's events and what it decoded."""
    srv = await turn_server(server_factory, coturn, secret)
    board, _ = make_engine(srv)
    viewer, rec = make_engine(srv)
    sink = AnalysisSink()
    with NetworkFaults() as faults:
        faults.only_through(TURN_ADDRESS, (coturn.port, coturn.port), RELAY_PORTS)
        async with board, viewer:
            await board.login_room("r", User("board"))
            await board.start_publishing("cam")
            await viewer.login_room("r", User("viewer"))
            await viewer.start_playing("cam", sink)
            yield rec, sink


async def test_peers_with_no_path_to_each_other_call_through_turn(
    server_factory: ServerFactory, coturn: Coturn
) -> None:
    async with call_with_turn_as_the_only_path(server_factory, coturn, TURN_SECRET) as (_, sink):
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 30)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1)
        assert sink.audio.tone_present(440.0)  # type: ignore[union-attr]
    assert coturn.allocations() >= 1


@pytest.mark.parametrize("refused", ["another secret", "expired"])
async def test_credentials_coturn_refuses_leave_the_viewer_without_a_picture_and_saying_so(
    server_factory: ServerFactory,
    coturn: Coturn,
    monkeypatch: pytest.MonkeyPatch,
    refused: str,
) -> None:
    """Credentials minted with another secret, or minted two days ago (the room server's
    TURN clock set back: their lifetime ended a day ago), are refused by coturn."""
    secret = "not-the-shared-secret" if refused == "another secret" else TURN_SECRET
    if refused == "expired":
        two_days_ago = types.SimpleNamespace(time=lambda: time.time() - 2 * 86400)
        monkeypatch.setattr(turn_module, "time", two_days_ago)
    async with call_with_turn_as_the_only_path(server_factory, coturn, secret) as (rec, sink):
        # The checks give up after aioice's retransmissions (about 40 s).
        await until(lambda: turn_unavailable in states(rec), 90)
    assert states(rec)[0] == (PlayerState.PLAY_REQUESTING, 0)
    assert (PlayerState.PLAYING, 0) not in states(rec)
    assert sink.video is None or sink.video.stats().decoded == 0
    assert coturn.allocations() == 0


turn_unavailable = (PlayerState.PLAY_REQUESTING, ErrorCode.TURN_UNAVAILABLE)


def states(rec: EventRecorder) -> list[tuple[PlayerState, int]]:
    return [(e.state, e.error_code) for e in rec.of(PlayerStateUpdate)]
