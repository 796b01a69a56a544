"""The SDP tells the truth: on every path a published H.264 stream takes (encoded here,
a camera's own, a file passed through or re-encoded), the SPS that goes out is covered by
the profile-level-id the viewer negotiated (``42e01f``); a stream that would not be (a
main or high profile file) is encoded again rather than sent under a false name."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_filesource import write_clip

from edged.engine.config import VideoConfig
from edged.media.h264 import NEGOTIATED_PROFILE_LEVEL, covered_by_negotiated, covers
from edged.media.sources.file import file_video_source
from edged.media.sources.picamera2.source import picamera2_video_source
from edged.model import User
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer
from enginekit import make_engine
from test_whep import whep_play

pytestmark = pytest.mark.netns
pytest_plugins = ["standinkit"]  # the picamera2 stand-in: fixture `board`

SMALL = VideoConfig(320, 240, 30.0, 300_000)


def negotiated_profile_level(answer: str) -> str:
    """The profile-level-id of the H.264 codec an answer chose for its video."""
    video = answer.split("m=video", 1)[1].split("m=", 1)[0]
    rtpmap = re.search(r"a=rtpmap:(\d+) H264/90000", video)
    assert rtpmap is not None, video
    payload = rtpmap.group(1)
    fmtp = re.search(rf"a=fmtp:{payload} ([^\r\n]*)", video)
    assert fmtp is not None, video
    found = re.search(r"profile-level-id=([0-9a-fA-F]{6})", fmtp.group(1))
    assert found is not None, fmtp.group(1)
    return found.group(1).lower()


def file_source(tmp_path: Path, profile: str) -> Callable[[Any], Any]:
    clip = write_clip(tmp_path / f"{profile}.mp4", profile)
    return lambda config: file_video_source(clip)


@pytest.mark.parametrize(
    ("path", "passed_through"),
    [
        ("libx264", False),
        ("picamera2", True),
        ("Baseline file", True),
        ("Main file", False),
        ("High file", False),
    ],
)
async def test_the_sps_sent_is_covered_by_the_profile_negotiated(
    srv: RunningServer, board: Any, tmp_path: Path, path: str, passed_through: bool
) -> None:
    profile: dict[str, Any] = {"video": SMALL}
    if path == "picamera2":
        profile["video_source"] = picamera2_video_source
    elif path.endswith(" file"):
        profile["video_source"] = file_source(tmp_path, path.split()[0])
    engine, _ = make_engine(srv, **profile)
    async with engine:
        await engine.login_room("r", User("board"))
        await engine.start_publishing("cam")
        played = await whep_play(srv, mint(SECRET, APP, "viewer", 600))
        try:
            assert played.status == 201, played.body
            sink = played.sink
            await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 30)
            negotiated = negotiated_profile_level(played.body)
            video = engine.publishers["cam"].video
            assert video is not None and video.profile_levels, "no SPS went out"
        finally:
            await played.pc.close()
    assert negotiated in (NEGOTIATED_PROFILE_LEVEL, "42001f"), negotiated  # aiortc offers both
    assert all(covers(negotiated, sps) for sps in video.profile_levels), video.profile_levels
    assert all(covered_by_negotiated(sps) for sps in video.profile_levels)
    assert (video.encoders_created == 0) == passed_through


def test_what_counts_as_covered() -> None:
    assert covers("42001f", "42e01f") and not covers("42e01f", "42001f")
    assert covers("640028", "4d401f") and not covers("4d401f", "640028")
    assert covered_by_negotiated("42e01f") and covered_by_negotiated("42c01e")
    assert covered_by_negotiated("4d801f")  # main with constraint_set0: constrained baseline
    assert not covered_by_negotiated("42001f")  # baseline without constraint_set1
    assert not covered_by_negotiated("4d401f")  # main
    assert not covered_by_negotiated("640028")  # high 4.0
    assert not covered_by_negotiated("42e028")  # constrained baseline, level 4.0
    assert not covered_by_negotiated("nonsense")
