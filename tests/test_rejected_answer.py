"""An answer that rejects the video section (as Firefox answers an offer of a codec it
lacks: a Janus-relayed stream, another peer) keeps the rest of the call: the device
keeps the link and the viewer hears it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from edged.model import User
from edged.testing.waiting import until

from conftest import RunningServer
from enginekit import AnalysisSink, make_engine
from protoclient import ProtoClient

pytestmark = pytest.mark.netns


def rejected_as_firefox_does(answer: str) -> str:
    """The answer with its video section as firefox-esr 153 writes a refused one (captured
    from it): port 0, a codec of its own, no ICE or DTLS attributes, out of BUNDLE."""
    head, *sections = re.split(r"\r\n(?=m=)", answer.strip())
    kept, rejected = [], []
    for section in sections:
        if not section.startswith("m=video"):
            kept.append(section)
            continue
        mid = re.search(r"a=mid:(\S+)", section)
        assert mid is not None
        rejected.append(mid.group(1))
        kept.append(
            "\r\n".join(
                [
                    "m=video 0 UDP/TLS/RTP/SAVPF 120",
                    "c=IN IP4 0.0.0.0",
                    "a=inactive",
                    f"a=mid:{mid.group(1)}",
                    "a=rtpmap:120 VP8/90000",
                ]
            )
        )
    head = re.sub(
        r"a=group:BUNDLE ([^\r]*)",
        lambda m: "a=group:BUNDLE " + " ".join(x for x in m[1].split() if x not in rejected),
        head,
    )
    return "\r\n".join([head, *kept]) + "\r\n"


async def next_description(client: ProtoClient) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await client.next(10)
            if msg["type"] == "signal" and msg.get("description"):
                return msg


async def test_a_viewer_rejecting_the_video_keeps_the_sound_and_its_link(
    srv: RunningServer,
) -> None:
    device, _ = make_engine(srv)
    async with device:
        await device.login_room("r1", User("device"))
        await device.start_publishing("door-cam")
        viewer = await srv.user("alice", notify=False)
        viewer.keep_alive(0.5)
        link = (await viewer.ok("play", stream_id="door-cam"))["link_id"]
        offer = (await next_description(viewer))["description"]
        pc = RTCPeerConnection()
        sink = AnalysisSink()
        pc.on("track", sink.attach)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            answer = rejected_as_firefox_does(pc.localDescription.sdp)
            assert "m=video 0 " in answer
            await viewer.ok("signal", link_id=link, description={"type": "answer", "sdp": answer})
            await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1, 20)
            assert sink.audio is not None and sink.audio.tone_present(440.0)
            viewers = device.publishers["door-cam"].viewers
            assert [v.user_id for v in viewers] == ["alice"], "the device kept the link"
            assert sink.video is None or sink.video.frames_received == 0
        finally:
            await pc.close()
