"""WHIP out: a board's stream sent also to an external WHIP endpoint, from its one encode.

The endpoint is another room server's WHIP ingest into its Janus (tests/test_whip.py):
the board publishes in its own room, and a viewer in the other server's room sees the
stream arrive as an ordinary one and decodes its time codes and tone.
"""

from __future__ import annotations

import pytest

from edged.engine.config import PublishConfig, RoomConfig
from edged.engine.events import PublisherQualityUpdate, RoomStreamUpdate
from edged.engine.whip_out import TargetState, WhipTarget
from edged.model import PublisherState, UpdateType, User
from edged.server.settings import SfuSettings
from edged.testing.janus import Janus
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, JANUS_SECRET, SECRET, RunningServer, ServerFactory
from enginekit import AnalysisSink, make_engine
from janusd import requires_janus
from pagekit import page_url

pytestmark = pytest.mark.netns


def whip_url(srv: RunningServer, room: str, stream: str) -> str:
    return f"{page_url(srv)}/whip/{APP}/{room}/{stream}"


@requires_janus
async def test_the_stream_reaches_a_whip_endpoint_as_well_and_leaves_it_with_the_board(
    srv: RunningServer, server_factory: ServerFactory, janus: Janus
) -> None:
    elsewhere = await server_factory(sfu=SfuSettings([janus.url], JANUS_SECRET))
    target = WhipTarget(whip_url(elsewhere, "hall", "door"), mint(SECRET, APP, "door-board", 600))
    board, _ = make_engine(srv)
    viewer, rec = make_engine(elsewhere)
    sink = AnalysisSink()
    async with board, viewer:
        await viewer.login_room("hall", User("screen"), RoomConfig(user_update=True))
        await board.login_room("home", User("board"))
        await board.start_publishing("cam", PublishConfig(targets=(target,)))
        await until(lambda: "door" in viewer.streams, 20)
        await viewer.start_playing("door", sink)
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 30)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1, 20)
        assert sink.video is not None and sink.video.stats().out_of_order == 0
        assert sink.audio is not None and sink.audio.tone_present(440.0)
        (sent,) = board.publishers["cam"].targets
        assert (sent.state, sent.error, sent.attempts) == (TargetState.SENDING, "", 1)
        assert board.publishers["cam"].viewer_count == 0, "a target is not a room viewer"
        await board.stop_publishing("cam")

        def deleted() -> bool:
            return any(
                s.stream_id == "door"
                for e in rec.of(RoomStreamUpdate)
                if e.update_type == UpdateType.DELETE
                for s in e.streams
            )

        await until(deleted, 20)


async def test_a_refusing_endpoint_is_retried_and_the_stream_goes_on(
    srv: RunningServer, server_factory: ServerFactory
) -> None:
    no_sfu = await server_factory()  # its WHIP ingest answers 503: it has no SFU
    target = WhipTarget(whip_url(no_sfu, "hall", "door"), mint(SECRET, APP, "door-board", 600))
    board, rec = make_engine(srv)
    async with board:
        await board.login_room("home", User("board"))
        await board.start_publishing("cam", PublishConfig(targets=(target,)))
        await until(lambda: board.publishers["cam"].targets[0].attempts >= 3, 20)

        def reported() -> list[str]:  # the quality reports carry it (and so MQTT)
            return [t.error for e in rec.of(PublisherQualityUpdate) for t in e.quality.targets]

        await until(lambda: any(error.startswith("HTTP 503") for error in reported()), 20)
        (sent,) = board.publishers["cam"].targets
        assert sent.state in (TargetState.RETRYING, TargetState.CONNECTING)
        assert sent.error.startswith("HTTP 503")
        assert board.publisher_state("cam") == PublisherState.PUBLISHING
        assert "door-board" not in repr(target) and target.token not in repr(target)
