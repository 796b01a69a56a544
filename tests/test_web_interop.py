"""Interop of the web client with what browsers send and what the engine answers.

mDNS answers as Chromium sends them, the page's time code against the spec and the
Python reader, and the engine's answer to the page's H.264 offers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edged.engine import mdns
from edged.media.sources import timecode
from edged.server.webapp import WEB_DIR

# ---- mDNS answers as Chromium sends them ----------------------------------------------

# Chromium's answer for the A record of a candidate's name, captured in the test
# namespace: the A record, then an NSEC record whose next-name is compressed (c0 46).
CHROMIUM_ANSWER = bytes.fromhex(
    "0000840000000001000000012461646362333031622d303134332d346666382d393632372d35633836"
    "6431663731393439056c6f63616c0000018001000000780004c61200012461646362333031622d3031"
    "34332d346666382d393632372d356338366431663731393439056c6f63616c00002f80010000007800"
    "05c046000140"
)
CHROMIUM_NAME = "adcb301b-0143-4ff8-9627-5c86d1f71949.local"


def test_chromium_mdns_answers_are_read() -> None:
    assert mdns.parse_addresses(CHROMIUM_ANSWER, CHROMIUM_NAME) == ["198.18.0.1"]
    assert mdns.parse_addresses(CHROMIUM_ANSWER, "other.local") == []
    assert mdns.parse_addresses(CHROMIUM_ANSWER[:40], CHROMIUM_NAME) == []
    query = mdns.build_query(CHROMIUM_NAME)
    assert mdns.parse_addresses(query, CHROMIUM_NAME) == []  # a query is not an answer
    assert mdns.is_mdns_name(CHROMIUM_NAME)
    assert not mdns.is_mdns_name("198.18.0.1")
    assert not mdns.is_mdns_name("a.b.local")


# ---- the page's modules under node ----------------------------------------------------

NODE_CHECK = r"""
import { writeFileSync } from "node:fs";
const web = process.argv[2];
const { decodeTimeCode, drawTimeCode, encodeBytes } = await import(`${web}/timecode.js`);
const { h264First } = await import(`${web}/links.js`);

class FakeContext {            // the little of CanvasRenderingContext2D the code uses
  constructor(w, h) { this.w = w; this.h = h; this.px = new Uint8ClampedArray(w * h * 4); }
  set fillStyle(v) { this.value = v === "#fff" ? 255 : 0; }
  fillRect(x, y, w, h) {
    for (let j = y; j < y + h; j++) for (let i = x; i < x + w; i++) {
      const p = (j * this.w + i) * 4;
      this.px[p] = this.px[p + 1] = this.px[p + 2] = this.value; this.px[p + 3] = 255;
    }
  }
  getImageData(x, y, w, h) { return { data: this.px.subarray(0, w * h * 4) }; }
}
const ctx = new FakeContext(640, 480);
drawTimeCode(ctx, 640, 480, 1700000000123, 4242);
writeFileSync(process.argv[3], ctx.px);
const codecs = [
  { mimeType: "video/VP8" },
  { mimeType: "video/H264", sdpFmtpLine: "packetization-mode=1;profile-level-id=640c1f" },
  { mimeType: "video/H264", sdpFmtpLine: "packetization-mode=0;profile-level-id=42e01f" },
  { mimeType: "video/H264", sdpFmtpLine: "packetization-mode=1;profile-level-id=42001f" },
  { mimeType: "video/H264", sdpFmtpLine: "packetization-mode=1;profile-level-id=42e01f" },
];
console.log(JSON.stringify({
  vector: Buffer.from(encodeBytes(1700000000000, 1)).toString("hex"),
  decoded: decodeTimeCode(ctx, 640, 480),
  order: h264First(codecs).map(c => c.sdpFmtpLine ?? c.mimeType),
}));
"""


def test_the_page_draws_and_reads_the_time_code_of_the_spec(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.fail("node is missing: ./scripts/setup installs it", pytrace=False)
    script = tmp_path / "check.mjs"
    script.write_text(NODE_CHECK)
    frame = tmp_path / "frame.rgba"
    out = subprocess.run(
        ["node", str(script), str(WEB_DIR), str(frame)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["vector"] == "b2018bcfe56800000001e76a"  # the spec's test vector
    assert result["decoded"] == {"captureMs": 1700000000123, "sequence": 4242}
    rgba = np.frombuffer(frame.read_bytes(), dtype=np.uint8).reshape(480, 640, 4)
    luma = (0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]).astype(np.uint8)
    assert timecode.decode(luma) == timecode.TimeCode(capture_ms=1700000000123, sequence=4242)
    assert result["order"][:3] == [
        "packetization-mode=1;profile-level-id=42e01f",
        "packetization-mode=1;profile-level-id=42001f",
        "packetization-mode=1;profile-level-id=640c1f",
    ]


# ---- the engine answering what the page offers ---------------------------------------


def _chrome_like_offer(profiles: list[str]) -> str:
    pts = [str(100 + i) for i in range(len(profiles))]
    lines = [
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
        "a=group:BUNDLE 0", "a=msid-semantic: WMS",
        f"m=video 9 UDP/TLS/RTP/SAVPF {' '.join(pts)}", "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass", "a=mid:0", "a=sendonly", "a=msid:- t1", "a=rtcp-mux",
    ]  # fmt: skip
    for pt, profile in zip(pts, profiles, strict=True):
        lines += [
            f"a=rtpmap:{pt} H264/90000",
            f"a=rtcp-fb:{pt} nack pli",
            f"a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;"
            f"profile-level-id={profile}",
        ]
    return "\r\n".join([*lines, "a=ssrc:1111 cname:x", ""])


async def test_the_engine_answers_h264_offers_ordered_as_the_page_orders_them() -> None:
    from aiortc import RTCSessionDescription

    from edged.engine.peer import make_peer_connection

    # What the page offers: baseline first, Chrome's main and high profiles after.
    offer = _chrome_like_offer(["42e01f", "42001f", "4d001f", "640c1f"])
    pc = make_peer_connection([])
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
    finally:
        await pc.close()
    video = next(line for line in answer.splitlines() if line.startswith("m=video"))
    assert video.split()[3:] == ["100", "101"]  # the two baseline profiles, nothing else
    assert "profile-level-id=42e01f" in answer
