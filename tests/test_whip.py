"""WHIP ingest: an encoder that speaks only HTTP and WebRTC publishes into an edged room.

The encoder is Chromium publishing its fake camera and microphone with a few lines of
the browser's own API following RFC 9725 (one POST, candidates by PATCH), on a blank
page of the server's. The room server puts the stream into the room's Janus; an engine
in the room sees an ordinary stream, plays it through Janus and decodes it.

Debian's own ``simple-whip-client`` publishes in tests/test_whip_peers.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser import Chromium

from edged.engine.config import RoomConfig
from edged.engine.events import EventRecorder, RoomStreamUpdate
from edged.media.sinks.analysis import AnalysisSink
from edged.model import PlayerState, UpdateType, User
from edged.server.settings import SfuSettings
from edged.testing.janus import Janus
from edged.testing.waiting import until
from edged.tokens import mint

from conftest import APP, JANUS_SECRET, SECRET, RunningServer, ServerFactory
from enginekit import make_engine
from janusd import requires_janus
from pagekit import page_url

pytestmark = pytest.mark.netns
pytest_plugins = ["pagekit"]  # fixture `chromium`

CHROMIUM_WHIP = """async ([url, token]) => {
  const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: "sendonly" });
    if (track.kind !== "video") continue;
    const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) =>
      c.mimeType === "video/H264" && /profile-level-id=42e01f/.test(c.sdpFmtpLine ?? "")
      && /packetization-mode=1/.test(c.sdpFmtpLine ?? ""));
    t.setCodecPreferences(h264);
  }
  const early = [];
  let resource = null, etag = null;
  const patch = (c) => fetch(resource, { method: "PATCH", headers: {
      "Authorization": `Bearer ${token}`, "Content-Type": "application/trickle-ice-sdpfrag",
      "If-Match": etag }, body: `a=mid:${c.sdpMid}\\r\\na=${c.candidate}\\r\\n` });
  window.patched = [];
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate || !candidate.candidate) return;
    if (resource === null) early.push(candidate); else window.patched.push(patch(candidate));
  };
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/sdp" } });
  if (response.status !== 201) return { status: response.status, body: await response.text() };
  resource = new URL(response.headers.get("Location"), url).href;
  etag = response.headers.get("ETag");
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  for (const c of early.splice(0)) window.patched.push(patch(c));
  window.whip = { pc, resource, token };
  return { status: response.status };
}"""

STOP = """async () => {
  const { pc, resource, token } = window.whip;
  const statuses = (await Promise.all(window.patched)).map((r) => r.status);
  const response = await fetch(resource, { method: "DELETE",
    headers: { "Authorization": `Bearer ${token}` } });
  pc.close();
  return { deleted: response.status, patched: statuses };
}"""


def whip_url(srv: RunningServer, room: str = "r", stream: str = "tab-cam") -> str:
    return f"{page_url(srv)}/whip/{APP}/{room}/{stream}"


async def whip_publish(chromium: Chromium, srv: RunningServer, user: str) -> tuple[Any, Any]:
    page = await chromium.page()
    await page.page.goto(page_url(srv) + "/healthz")
    result = await page.evaluate(CHROMIUM_WHIP, [whip_url(srv), mint(SECRET, APP, user, 600)])
    return page, result


def streams_of(rec: EventRecorder, update: UpdateType) -> list[str]:
    return [
        s.stream_id for e in rec.of(RoomStreamUpdate) if e.update_type == update for s in e.streams
    ]


def pictures(sink: AnalysisSink) -> int:
    """Frames decoded so far (Chromium's fake camera shows no time code)."""
    stats = sink.video.stats() if sink.video is not None else None
    return stats.decoded + stats.undecoded if stats is not None else 0


@requires_janus
async def test_a_whip_encoder_publishes_a_stream_the_room_plays_through_janus(
    server_factory: ServerFactory, janus: Janus, chromium: Chromium
) -> None:
    srv = await server_factory(sfu=SfuSettings([janus.url], JANUS_SECRET))
    viewer, rec = make_engine(srv)
    sink = AnalysisSink()
    async with viewer:
        await viewer.login_room("r", User("viewer"), RoomConfig(user_update=True))
        page, result = await whip_publish(chromium, srv, "studio")
        assert result["status"] == 201, result
        await until(lambda: "tab-cam" in viewer.streams, 20)
        stream = viewer.streams["tab-cam"]
        assert (stream.user.user_id, stream.has_video, stream.has_audio) == ("studio", True, True)
        await viewer.start_playing("tab-cam", sink)
        await until(lambda: pictures(sink) >= 30, 30)
        await until(lambda: sink.audio is not None and sink.audio.seconds_received >= 1, 20)
        assert viewer.player_state("tab-cam") == PlayerState.PLAYING
        stopped = await page.evaluate(STOP)
        assert stopped["deleted"] == 200 and set(stopped["patched"]) <= {204}
        await until(lambda: "tab-cam" in streams_of(rec, UpdateType.DELETE), 20)
        assert "tab-cam" not in viewer.streams


async def test_without_an_sfu_whip_is_refused_saying_why(srv: RunningServer) -> None:
    token = mint(SECRET, APP, "x", 60)
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with srv.http.post(whip_url(srv), data="v=0\r\n", headers=headers) as response:
        assert response.status == 503
        body = await response.json(content_type=None)
    assert body["code"] == 1004051 and "--sfu" in body["detail"]


@requires_janus
async def test_a_stream_id_already_published_is_refused_with_its_code(
    server_factory: ServerFactory, janus: Janus
) -> None:
    srv = await server_factory(sfu=SfuSettings([janus.url], JANUS_SECRET))
    board, _ = make_engine(srv)
    async with board:
        await board.login_room("r", User("board"))
        await board.start_publishing("tab-cam")
        token = mint(SECRET, APP, "second", 60)
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
        async with srv.http.post(whip_url(srv), data="v=0\r\n", headers=headers) as r:
            assert r.status == 409
            assert (await r.json(content_type=None))["code"] == 1003028
