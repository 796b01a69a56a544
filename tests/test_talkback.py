"""Talking back through WHEP: the audio a player sends (its microphone, ``sendrecv`` as
Home Assistant's player offers it) reaches the publishing engine's talkback sink, and on
the daemon its speaker; without a sink the answer declines it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from alsa.pcms import SPEAKER, AlsaPcms, speaker_level, tone_share

from edged.engine.config import PublishConfig
from edged.engine.talkback import TalkbackSinks
from edged.media.sinks.analysis import AnalysisSink
from edged.media.sources.tone import ToneTrack
from edged.model import User
from edged.testing.waiting import until
from edged.tokens import mint

from broker import Broker
from conftest import APP, SECRET, RunningServer
from daemonkit import DEVICE, DaemonProcess, command, publishing, state_where, write_config
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


# ---- the daemon: a viewer's microphone on the speaker ---------------------------------


def daemon_config(tmp_path: Path, srv: RunningServer, broker: Broker, talkback: bool) -> Path:
    config = tmp_path / "edged.yaml"
    write_config(config, srv, broker)
    document = yaml.safe_load(config.read_text())
    document["audio"].update(playback_device=SPEAKER, talkback=talkback)
    config.write_text(yaml.safe_dump(document))
    return config


@pytest.fixture
async def daemon(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    srv: RunningServer,
    broker: Broker,
    pcms: AlsaPcms,
) -> AsyncIterator[DaemonProcess]:
    """`edged run` publishing, its speaker the tests' file PCM; ``audio.talkback`` from
    the test's parameter (on by default)."""
    config = daemon_config(tmp_path, srv, broker, getattr(request, "param", True))
    process = DaemonProcess(config, tmp_path)
    try:
        async with broker.client() as mqtt:
            await mqtt.subscribe(f"edged/{DEVICE}/state", qos=1)
            await process.start()
            await state_where(mqtt, publishing, 30)
        yield process
    finally:
        await process.close()


async def test_the_daemon_plays_a_whep_viewers_microphone_on_its_speaker(
    daemon: DaemonProcess, srv: RunningServer, broker: Broker, pcms: AlsaPcms
) -> None:
    played = await talk(srv, f"{DEVICE}-cam")
    try:
        assert played.status == 201, played.body
        assert directions(played.body)["audio"] == "sendrecv"
        await until(lambda: len(pcms.speaker_samples(2)) > 96_000, 30, "the speaker plays")
        mark = len(pcms.speaker_samples(2))
        await until(lambda: len(pcms.speaker_samples(2)) >= mark + 48_000, 10)
        heard = pcms.speaker_samples(2)[mark : mark + 48_000]
        assert tone_share(heard, 48_000, VOICE_HZ) > 0.8
        await stream_plays(played)
        loud = await speaker_level(pcms)
        async with broker.client() as mqtt:  # the speaker's mute applies to it too
            await mqtt.subscribe(f"edged/{DEVICE}/command/response", qos=1)
            assert (await command(mqtt, "mute_speaker"))["result"]["speaker_muted"] is True
        assert loud - await speaker_level(pcms) >= 60
    finally:
        await played.pc.close()


@pytest.mark.parametrize("daemon", [False], indirect=True, ids=["talkback_off"])
async def test_with_talkback_off_the_daemon_does_not_play_the_viewers_audio(
    daemon: DaemonProcess, srv: RunningServer, pcms: AlsaPcms
) -> None:
    played = await talk(srv, f"{DEVICE}-cam")
    try:
        assert played.status == 201, played.body
        assert directions(played.body)["audio"] == "sendonly"
        await stream_plays(played)  # for a second and more: talkback would be heard by now
        heard = pcms.speaker_samples(2)
        assert len(heard) == 0 or tone_share(heard, 48_000, VOICE_HZ) < 0.01
    finally:
        await played.pc.close()
