"""Talking back through WHEP: the audio a player sends (its microphone, ``sendrecv`` as
Home Assistant's player offers it) reaches the publishing engine's talkback sink; without
a sink the answer declines it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from edged.engine.config import PublishConfig
from edged.engine.talkback import TalkbackSinks
from edged.media.sinks.analysis import AnalysisSink
from edged.media.sources.tone import ToneTrack
from edged.model import User
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer
from enginekit import make_engine
from test_whep import Played, delete, whep_play

pytestmark = pytest.mark.netns

VOICE_HZ = 660.0
"""The player's microphone; the device publishes a 440 Hz tone."""


class TalkbackSink(AnalysisSink):
    """Where a viewer's audio goes in these tests: measured, and whether it was closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True
        await super().close()


def directions(sdp: str) -> dict[str, str]:
    """Each m-line's kind and direction in an SDP."""
    found: dict[str, str] = {}
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and kind:
            found[kind] = line[2:]
    return found


async def talk(srv: RunningServer, stream_id: str, user: str = "ha") -> Played:
    """A player with its microphone on: audio first, ``sendrecv`` with a tone, then video
    ``recvonly``, as Home Assistant's player offers them."""
    return await whep_play(
        srv,
        mint(SECRET, APP, user, 600),
        stream_id=stream_id,
        kinds=("audio", "video"),
        microphone=ToneTrack(VOICE_HZ),
    )


@contextlib.asynccontextmanager
async def talking_to_a_board(
    srv: RunningServer, talkback: TalkbackSinks | None, config: PublishConfig | None = None
) -> AsyncIterator[Played]:
    """A board publishing ``cam`` with ``talkback``, and a player talking to it."""
    engine, _ = make_engine(srv)
    engine.talkback = talkback
    async with engine:
        await engine.login_room("r", User("board"))
        await engine.start_publishing("cam", config)
        played = await talk(srv, "cam")
        try:
            assert played.status == 201, played.body
            yield played
        finally:
            await played.pc.close()


async def stream_plays(played: Played) -> None:
    """The player decodes the board's video and its 440 Hz tone."""
    seen = played.sink
    await until(lambda: seen.video is not None and seen.video.stats().decoded >= 30, 20)
    await until(lambda: seen.audio is not None and seen.audio.seconds_received >= 1, 20)
    assert seen.audio is not None and seen.audio.tone_present(440.0)


async def test_the_players_microphone_reaches_the_talkback_sink_and_the_stream_still_plays(
    srv: RunningServer,
) -> None:
    sinks: dict[str, TalkbackSink] = {}

    def talkback(user_id: str) -> TalkbackSink:
        sinks[user_id] = TalkbackSink()
        return sinks[user_id]

    async with talking_to_a_board(srv, talkback) as played:
        assert directions(played.body) == {"audio": "sendrecv", "video": "sendonly"}
        await until(lambda: "ha" in sinks and sinks["ha"].audio is not None, 10)
        heard = sinks["ha"].audio
        assert heard is not None
        await until(lambda: heard.seconds_received >= 1.5, 20, "the viewer's audio arrives")
        assert heard.tone_present(VOICE_HZ)
        await stream_plays(played)
        assert not sinks["ha"].closed
        assert await delete(srv, played.headers["Location"], "ha") == 200
        await until(lambda: sinks["ha"].closed, 10, "the sink is closed with the link")


async def test_a_stream_without_audio_still_hears_the_player(srv: RunningServer) -> None:
    sink = TalkbackSink()
    async with talking_to_a_board(srv, lambda _user: sink, PublishConfig(audio=False)) as played:
        assert directions(played.body) == {"audio": "recvonly", "video": "sendonly"}
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1.5, 20)
        assert sink.audio is not None and sink.audio.tone_present(VOICE_HZ)


@pytest.mark.parametrize("talkback", [None, lambda _user: None], ids=["none", "declined"])
async def test_without_a_talkback_sink_the_answer_declines_the_players_audio(
    srv: RunningServer, talkback: TalkbackSinks | None
) -> None:
    async with talking_to_a_board(srv, talkback) as played:
        assert directions(played.body) == {"audio": "sendonly", "video": "sendonly"}
        await stream_plays(played)
        microphone = played.pc.getTransceivers()[0]
        assert (microphone.kind, microphone.currentDirection) == ("audio", "recvonly")
