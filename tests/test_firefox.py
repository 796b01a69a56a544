"""The web client page in stock Firefox ESR (Debian's, no OpenH264), in calls with an
edged engine: it plays the device (its picture over VP8, which the device encodes once
for such viewers, or over H.264 where Firefox is told to decode it with the system's
FFmpeg), and the device plays what Firefox publishes (VP8: the only video codec stock
Firefox sends)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edged.engine.engine import Engine
from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine
from firefox import H264_THROUGH_FFMPEG, Firefox
from pagekit import join_query, page_url

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not Firefox.installed(), reason="firefox-esr (scripts/setup --test)"),
]
pytest_plugins = ["firefox"]

TILE = ".tile[data-stream-id='door-cam']"


async def joined(firefox: Firefox, srv: RunningServer, user: str) -> None:
    await firefox.open(page_url(srv), **join_query(srv, user))
    await until(lambda: firefox.page("return Boolean(window.edged && window.edged.app);"), 20)
    await firefox.page("document.getElementById('join').click();")
    await until(
        lambda: firefox.page(
            "return document.getElementById('room-state').dataset.state === 'CONNECTED';"
        ),
        20,
        "Firefox in the room",
    )


async def player_state(firefox: Firefox) -> str | None:
    state: str | None = await firefox.page(
        f'const e = document.querySelector("{TILE} .player-state"); return e && e.dataset.state;'
    )
    return state


async def received(firefox: Firefox, kind: str) -> int:
    count: int = await firefox.page(
        """const pc = window.edged.call.players.get("door-cam").link.pc;
           let n = 0;
           (await pc.getStats()).forEach((s) => {
             if (s.type === "inbound-rtp" && s.kind === args[0]) n += s.packetsReceived;
           });
           return n;""",
        kind,
    )
    return count


async def publishing_device(srv: RunningServer) -> Engine:
    engine, _ = make_engine(srv)
    await engine.__aenter__()
    await engine.login_room("r1", User("device", "Front door"))
    await engine.start_publishing("door-cam")
    return engine


async def test_stock_firefox_sees_the_device_over_vp8_and_hears_it(
    srv: RunningServer, firefox_factory: Any
) -> None:
    engine = await publishing_device(srv)
    try:
        firefox: Firefox = await firefox_factory()
        await joined(firefox, srv, "alice")
        await until(lambda: _is(player_state(firefox), "PLAYING"), 30, "Firefox playing")
        code = await until(lambda: read_time_code(firefox), 30, "a time code on screen")
        assert (code["width"], code["height"]) == (320, 240)
        assert -50 <= code["now"] - code["captureMs"] < 3000, code
        await until(lambda: _at_least(received(firefox, "audio"), 100), 20, "100 audio packets")
        video = engine.publishers["door-cam"].video
        assert video is not None and (video.vp8_encoders_created, video.vp8_viewers) == (1, 1)
        assert [v.user_id for v in engine.publishers["door-cam"].viewers] == ["alice"]
    finally:
        await engine.__aexit__(None, None, None)


async def test_firefox_decoding_h264_with_ffmpeg_reads_the_device_time_code(
    srv: RunningServer, firefox_factory: Any
) -> None:
    engine = await publishing_device(srv)
    try:
        firefox: Firefox = await firefox_factory(**H264_THROUGH_FFMPEG)
        await joined(firefox, srv, "alice")
        await until(lambda: _is(player_state(firefox), "PLAYING"), 30, "Firefox playing")
        code = await until(lambda: read_time_code(firefox), 30, "a time code on screen")
        assert (code["width"], code["height"]) == (320, 240)
        assert -50 <= code["now"] - code["captureMs"] < 3000, code
    finally:
        await engine.__aexit__(None, None, None)


async def read_time_code(firefox: Firefox) -> dict[str, Any] | None:
    code: dict[str, Any] | None = await firefox.page(
        f"""const {{ decodeTimeCode }} = await import('/web/timecode.js');
            const video = document.querySelector("{TILE} video");
            const W = video.videoWidth, H = video.videoHeight;
            if (!W || !H) return null;
            const canvas = document.createElement('canvas');
            canvas.width = W; canvas.height = H;
            const ctx = canvas.getContext('2d', {{ willReadFrequently: true }});
            ctx.drawImage(video, 0, 0, W, H);
            const code = decodeTimeCode(ctx, W, H);
            return code && {{ ...code, now: Date.now(), width: W, height: H }};"""
    )
    return code


async def test_the_device_sees_and_hears_firefox_over_vp8(
    srv: RunningServer, firefox_factory: Any
) -> None:
    firefox: Firefox = await firefox_factory()
    await joined(firefox, srv, "alice")
    await firefox.page(
        """document.getElementById('source').value = 'camera';
           document.getElementById('source').dispatchEvent(new Event('change'));
           document.getElementById('publish').click();"""
    )
    await until(
        lambda: firefox.page(
            "return document.getElementById('publisher-state').dataset.state === 'PUBLISHING';"
        ),
        30,
        "Firefox publishing",
    )
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r1", User("device"))
        sink = AnalysisSink()
        await engine.start_playing("alice-cam", sink)
        await until(lambda: sink.video is not None and sink.video.frames_received >= 30, 30)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 2.0, 30)
        assert sink.audio is not None
        assert np.abs(sink.audio.samples(2.0)).max() > 0.05, "Firefox's fake microphone is silent"
        codec = await firefox.page(
            """const link = [...window.edged.call.publisher.links.values()][0];
               const stats = await link.pc.getStats();
               const video = [...stats.values()]
                 .find(s => s.type === 'outbound-rtp' && s.kind === 'video');
               return stats.get(video.codecId).mimeType;"""
        )
        assert codec == "video/VP8"


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, least: int) -> bool:
    return bool(await value >= least)
