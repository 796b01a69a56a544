"""WHEP egress: players that speak only HTTP and WebRTC play any published stream.

Each player here follows the WHEP draft and nothing of edged: an aiortc peer that
POSTs its offer with aiohttp, and Chromium running plain ``fetch()`` on a blank page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from browser import Chromium

from edged.engine.config import RoomConfig
from edged.engine.engine import Engine
from edged.engine.events import EventRecorder, RoomUserUpdate
from edged.media.sinks.analysis import AnalysisSink
from edged.model import UpdateType, User
from edged.server.turn import TurnSettings
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, SECRET, RunningServer, ServerFactory
from enginekit import make_engine
from pagekit import page_url

pytestmark = pytest.mark.netns
pytest_plugins = ["pagekit"]  # fixture `chromium`


def whep_url(srv: RunningServer, stream_id: str = "cam") -> str:
    return f"{page_url(srv)}/whep/{APP}/{stream_id}"


@dataclass
class Played:
    """A WHEP player's peer connection, what it decodes, and the server's answer."""

    pc: RTCPeerConnection
    sink: AnalysisSink
    status: int
    headers: Any
    body: str


async def whep_play(
    srv: RunningServer,
    token: str | None,
    *,
    query: bool = False,
    stream_id: str = "cam",
    kinds: tuple[str, ...] = ("video", "audio"),
    microphone: MediaStreamTrack | None = None,
    video_codec: str | None = None,
) -> Played:
    """An aiortc peer asking for ``kinds`` (video and audio), as the WHEP draft says: one
    POST. With a ``microphone``, its audio is ``sendrecv`` and sends that track (a player
    talking back, as Home Assistant's does). With ``video_codec`` (``"video/VP8"``), the
    only video codec offered."""
    pc = RTCPeerConnection()
    sink = AnalysisSink()
    pc.on("track", sink.attach)
    for kind in kinds:
        if kind == "audio" and microphone is not None:
            pc.addTransceiver(microphone, direction="sendrecv")
        else:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "video" and video_codec is not None:  # offer only that codec
                codecs = RTCRtpReceiver.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in codecs if c.mimeType in (video_codec, "video/rtx")]
                )
    await pc.setLocalDescription(await pc.createOffer())
    url = whep_url(srv, stream_id)
    headers = {"Content-Type": "application/sdp"}
    if token is not None and query:
        url += f"?token={token}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with srv.http.post(url, data=pc.localDescription.sdp, headers=headers) as response:
        body = await response.text()
        played = Played(pc, sink, response.status, response.headers, body)
    if played.status == 201:
        await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return played


async def delete(srv: RunningServer, location: str, user: str) -> int:
    """The status of ``DELETE`` on a resource, with a token of ``user``."""
    token = {"Authorization": f"Bearer {mint(SECRET, APP, user, 600)}"}
    async with srv.http.delete(page_url(srv) + location, headers=token) as response:
        return response.status


def left_the_room(rec: EventRecorder, user_id: str) -> bool:
    deleted = [e for e in rec.of(RoomUserUpdate) if e.update_type == UpdateType.DELETE]
    return any(u.user_id == user_id for e in deleted for u in e.users)


@pytest.fixture
async def board(srv: RunningServer) -> AsyncIterator[tuple[Engine, EventRecorder]]:
    engine, rec = make_engine(srv)
    async with engine:
        await engine.login_room("r", User("board"), RoomConfig(user_update=True))
        await engine.start_publishing("cam")
        yield engine, rec


async def test_a_whep_player_decodes_the_stream_and_is_a_member_of_the_room(
    srv: RunningServer, board: tuple[Engine, EventRecorder]
) -> None:
    engine, rec = board
    played = await whep_play(srv, mint(SECRET, APP, "tv", 600))
    try:
        assert played.status == 201, played.body
        assert played.headers["Content-Type"].startswith("application/sdp")
        location = played.headers["Location"]
        assert location.startswith(f"/whep/{APP}/cam/") and played.headers["ETag"]
        sink = played.sink
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 20)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1, 20)
        assert sink.video is not None and sink.video.stats().out_of_order == 0
        assert sink.audio is not None and sink.audio.tone_present(440.0)
        assert [v.user_id for v in engine.publishers["cam"].viewers] == ["tv"]
        added = [e for e in rec.of(RoomUserUpdate) if e.update_type == UpdateType.ADD]
        assert any(u.user_id == "tv" for e in added for u in e.users)
        assert await delete(srv, location, "tv") == 200
        await until(lambda: not engine.publishers["cam"].viewers)
        assert left_the_room(rec, "tv")
        assert await delete(srv, location, "tv") == 404
    finally:
        await played.pc.close()


async def test_a_player_asking_for_video_only_gets_video_only(
    srv: RunningServer, board: tuple[Engine, EventRecorder]
) -> None:
    played = await whep_play(srv, mint(SECRET, APP, "tv", 600), kinds=("video",))
    try:
        assert played.status == 201, played.body
        assert [line.split()[0] for line in played.body.splitlines() if line.startswith("m=")] == [
            "m=video"
        ]
        sink = played.sink
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 30, 20)
        assert sink.audio is None
    finally:
        await played.pc.close()


async def test_before_the_stream_is_published_the_answer_is_409_with_retry_after(
    srv: RunningServer,
) -> None:
    played = await whep_play(srv, mint(SECRET, APP, "tv", 600), stream_id="later")
    await played.pc.close()
    assert played.status == 409
    assert int(played.headers["Retry-After"]) > 0
    assert played.headers["Content-Type"].startswith("application/problem+json")
    assert '"code": 1004002' in played.body or '"code":1004002' in played.body


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [(None, 401, 1002043), ("not-a-token", 401, 1002033), ("other-app", 401, 1002038)],
)
async def test_missing_and_bad_tokens_are_refused_with_their_codes(
    srv: RunningServer,
    board: tuple[Engine, EventRecorder],
    token: str | None,
    status: int,
    code: int,
) -> None:
    if token == "other-app":
        token = mint("another-secret-that-is-long-enough-32b!", "other", "tv", 600)
    played = await whep_play(srv, token)
    await played.pc.close()
    assert (played.status, f'"code": {code}' in played.body) == (status, True), played.body
    assert board[0].publishers["cam"].viewers == ()


async def test_a_token_in_the_query_string_plays_and_is_never_logged(
    srv: RunningServer, board: tuple[Engine, EventRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = mint(SECRET, APP, "go2rtc", 600)
    played = await whep_play(srv, token, query=True)
    try:
        assert played.status == 201, played.body
        sink = played.sink
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 10, 20)
    finally:
        await played.pc.close()
    assert token not in caplog.text


async def test_a_trickle_patch_is_taken_for_its_own_resource_only_and_with_its_etag(
    srv: RunningServer, board: tuple[Engine, EventRecorder]
) -> None:
    token = mint(SECRET, APP, "tv", 600)
    played = await whep_play(srv, token)
    try:
        assert played.status == 201, played.body
        url = page_url(srv) + played.headers["Location"]
        candidate = "a=candidate:1 1 udp 2130706431 198.18.0.2 9 typ host"
        fragment = f"a=ice-ufrag:abcd\r\na=mid:0\r\n{candidate}\r\n"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/trickle-ice-sdpfrag",
            "If-Match": played.headers["ETag"],
        }
        async with srv.http.patch(url, data=fragment, headers=headers) as response:
            assert response.status == 204
        async with srv.http.patch(
            url, data=fragment, headers={**headers, "If-Match": '"stale"'}
        ) as response:
            assert response.status == 412
        someone_else = {**headers, "Authorization": f"Bearer {mint(SECRET, APP, 'eve', 600)}"}
        async with srv.http.patch(url, data=fragment, headers=someone_else) as response:
            assert response.status == 404
        sink = played.sink
        await until(lambda: sink.video is not None and sink.video.stats().decoded >= 10, 20)
    finally:
        await played.pc.close()


async def test_options_answers_cors_preflights(srv: RunningServer) -> None:
    async with srv.http.options(whep_url(srv)) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Location" in response.headers["Access-Control-Expose-Headers"]
        assert response.headers["Accept-Post"] == "application/sdp"


CHROMIUM_WHEP = """async ([url, token]) => {
  // A WHEP player in a few lines of the browser's own API: offer at once, trickle later.
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const video = document.createElement("video");
  video.muted = true;
  document.body.append(video);
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; video.play(); };
  const early = [];
  let resource = null, etag = null;
  const patch = (c) => fetch(resource, { method: "PATCH", headers: {
      "Authorization": `Bearer ${token}`, "Content-Type": "application/trickle-ice-sdpfrag",
      "If-Match": etag }, body: `a=mid:${c.sdpMid}\\r\\na=${c.candidate}\\r\\n` });
  const patched = [];
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate || !candidate.candidate) return;
    if (resource === null) early.push(candidate); else patched.push(patch(candidate));
  };
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/sdp" } });
  resource = new URL(response.headers.get("Location"), url).href;
  etag = response.headers.get("ETag");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  for (const c of early.splice(0)) patched.push(patch(c));
  const deadline = Date.now() + 20000;
  while (video.getVideoPlaybackQuality().totalVideoFrames < 30 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const statuses = (await Promise.all(patched)).map((r) => r.status);
  return { status: response.status, frames: video.getVideoPlaybackQuality().totalVideoFrames,
           statuses, width: video.videoWidth, resource };
}"""


async def test_chromium_plays_with_fetch_and_trickles_its_candidates_by_patch(
    srv: RunningServer, board: tuple[Engine, EventRecorder], chromium: Chromium
) -> None:
    page = await chromium.page(fake_media=False)
    await page.page.goto(page_url(srv) + "/healthz")  # a page of the server's: no edged JavaScript
    result = await page.evaluate(CHROMIUM_WHEP, [whep_url(srv), mint(SECRET, APP, "tab", 600)])
    assert result["status"] == 201
    assert result["frames"] >= 30 and result["width"] == 320
    assert result["statuses"] and set(result["statuses"]) == {204}, "candidates went by PATCH"
    assert [v.user_id for v in board[0].publishers["cam"].viewers] == ["tab"]


async def test_the_answer_carries_turn_credentials_minted_for_the_player_as_link_headers(
    server_factory: ServerFactory,
) -> None:
    turn = TurnSettings(["turn:198.18.0.3:3478?transport=udp"], "shared-secret-of-turn")
    srv = await server_factory(turn=turn)
    engine, _ = make_engine(srv)
    async with engine:
        await engine.login_room("r", User("board"))
        await engine.start_publishing("cam")
        played = await whep_play(srv, mint(SECRET, APP, "tv", 600))
        await played.pc.close()
    assert played.status == 201, played.body
    (link,) = played.headers.getall("Link")
    assert link.startswith('<turn:198.18.0.3:3478?transport=udp>; rel="ice-server"')
    assert ':tv"' in link and 'credential-type="password"' in link
    assert "shared-secret-of-turn" not in link


async def test_when_the_stream_ends_the_whep_player_leaves_the_room(
    srv: RunningServer, board: tuple[Engine, EventRecorder]
) -> None:
    engine, rec = board
    played = await whep_play(srv, mint(SECRET, APP, "tv", 600))
    try:
        assert played.status == 201, played.body
        await until(lambda: [v.user_id for v in engine.publishers["cam"].viewers] == ["tv"])
        await engine.stop_publishing("cam")

        await until(lambda: left_the_room(rec, "tv"), 10)
        # the resource ended with the stream
        assert await delete(srv, played.headers["Location"], "tv") == 404
    finally:
        await played.pc.close()
