"""Glass-to-glass latency into Chromium: from edged, and from another Chromium.

Both paths end in the same place: the web client page playing a stream in a tile, whose
time-code reader reads every presented frame (requestVideoFrameCallback, a canvas copy
of the frame, docs/timecode.md) and compares its capture time with its display time.

* edged -> Chromium: an edged engine (its own process) publishes the time-code test
  pattern, 640x480@30, H.264 1 Mbit/s; the page plays it.
* Chromium -> Chromium: another Chromium (its own browser process) runs the same page
  and publishes its "test pattern with time code" source (a canvas drawn by the page,
  same code layout, 640x480@30, captured to a track); the first page plays it.

* edged -> WHEP player: the same edged stream, played at the same time by a third
  Chromium tab that is no web client at all: a blank page of the server's that plays it
  by WHEP with plain ``fetch()`` (docs/whep.md) and reads the same time codes.

The paths alternate for several rounds, each starting its source anew: where a
frame lands relative to the receiver's display refresh (16.7 ms) is set by when the
source started, and a round that starts unlucky shows about one refresh more latency
for its whole length. Pooling rounds averages that out of the comparison.

Everything runs inside a private network namespace, one room server in this process,
Debian's Chromium headless under Playwright (no browser is downloaded).

    python bench/browser_latency.py [--quick] [--duration S] [--rounds N]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the Playwright helpers the tests use

APP, SECRET = "bench", "bench-secret-0123456789-0123456789-abcdef"
ROOM = "bench"
WIDTH, HEIGHT, FPS, BITRATE = 640, 480, 30.0, 1_000_000
WARMUP_S = 3.0
GOAL_RATIO = 1.25


async def edged_publisher(url: str, audio: bool) -> None:
    """Role run in its own process: an engine publishing the test pattern until stdin closes."""
    from edged.engine.config import EngineProfile, PublishConfig, VideoConfig
    from edged.engine.engine import Engine
    from edged.model import User

    profile = EngineProfile(
        APP, url, app_secret=SECRET, video=VideoConfig(WIDTH, HEIGHT, FPS, BITRATE)
    )
    async with Engine(profile) as engine:
        await engine.login_room(ROOM, User("edged", "edged engine"))
        await engine.start_publishing("edged-cam", PublishConfig(audio=audio))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve(port: int) -> Any:
    from edged.server.run import start_server
    from edged.server.settings import ServerSettings

    return await start_server(ServerSettings(apps={APP: SECRET}, port=port))


def token(user: str) -> str:
    from edged.tokens import mint

    return mint(SECRET, APP, user, 3600, room_id=ROOM)


async def open_page(chromium: Any, base: str, user: str) -> Any:
    page = await chromium.page()
    await page.open(base, app=APP, room=ROOM, user=user, token=token(user))
    await page.join()
    await page.wait_room("CONNECTED", "LOGINED")
    return page


WHEP_PLAYER = """async ([url, token]) => {
  const { TimeCodeReader } = await import('/web/timecode.js');
  const video = document.createElement('video');
  video.muted = true;
  document.body.append(video);
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; video.play(); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
  });
  const response = await fetch(url, { method: 'POST', body: pc.localDescription.sdp,
    headers: { 'Authorization': `Bearer ${token}`, 'Content-Type': 'application/sdp' } });
  if (response.status !== 201) throw new Error(`WHEP answered ${response.status}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  window.whep = { pc, reader: new TimeCodeReader(video) };
  window.whep.reader.start();
}"""
"""A WHEP player in the page's own JavaScript: one POST, then the time-code reader."""


async def whep_play(chromium: Any, base: str) -> Any:
    page = await chromium.page(fake_media=False)
    await page.page.goto(f"{base}/healthz")
    await page.evaluate(WHEP_PLAYER, [f"{base}/whep/{APP}/edged-cam", token("whep-tab")])
    return page


async def measure_whep(player: Any, duration: float) -> dict[str, Any]:
    """What :func:`measure` takes from a tile, from the WHEP tab's reader."""
    await player.page.wait_for_function("() => window.whep.reader.decoded > 0", timeout=30_000)
    await asyncio.sleep(WARMUP_S)
    await player.evaluate("() => window.whep.reader.reset()")
    await asyncio.sleep(duration)
    return dict(
        await player.evaluate(
            "() => ({ shown: [...window.whep.reader.samples], received:"
            " [...window.whep.reader.receiveSamples], missing: window.whep.reader.missing,"
            " quality: '' })"
        )
    )


async def measure(player: Any, stream_id: str, duration: float) -> dict[str, Any]:
    """Samples of ``stream_id`` in the player page over ``duration`` after the warm-up."""
    await player.wait_playing(stream_id, timeout=30)
    reader = f"window.edged.view.tiles.get('{stream_id}').reader"
    await player.page.wait_for_function(f"() => {reader}.decoded > 0", timeout=30_000)
    await asyncio.sleep(WARMUP_S)
    await player.evaluate(f"() => {reader}.reset()")
    await asyncio.sleep(duration)
    return dict(
        await player.evaluate(
            f"() => ({{ shown: [...{reader}.samples], received: [...{reader}.receiveSamples],"
            f" missing: {reader}.missing, quality: document.querySelector("
            f"\".tile[data-stream-id='{stream_id}'] .quality\").textContent }})"
        )
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds' samples (each round starts the source anew, at another phase)."""
    shown = [v for r in rounds for v in r["shown"]]
    received = [v for r in rounds for v in r["received"]]
    if not shown:
        raise SystemExit("no time code was read")
    return {
        "p50": percentile(shown, 0.5),
        "p95": percentile(shown, 0.95),
        "round_p50": [percentile(r["shown"], 0.5) for r in rounds],
        "round_p50_mean": round(sum(percentile(r["shown"], 0.5) for r in rounds) / len(rounds), 1),
        "received_p50": percentile(received, 0.5),
        "received_p95": percentile(received, 0.95),
        "frames": len(shown),
        "missing": sum(r["missing"] for r in rounds),
        "quality": rounds[-1]["quality"],
    }


def start_edged(url: str, audio: bool) -> subprocess.Popen[str]:
    role = "edged-publisher-with-audio" if audio else "edged-publisher"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--url", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the edged publisher failed to start")
    return proc


async def gone(player: Any, stream_id: str) -> None:
    await player.page.wait_for_selector(
        f".tile[data-stream-id='{stream_id}']", state="detached", timeout=30_000
    )


async def run(duration: float, rounds: int, audio: bool) -> dict[str, dict[str, Any]]:
    """Alternate the two paths ``rounds`` times, ``duration / rounds`` measured each time."""
    from browser import chromium_browsers

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    runner = await serve(port)
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws"
    edged_rounds: list[dict[str, Any]] = []
    whep_rounds: list[dict[str, Any]] = []
    chromium_rounds: list[dict[str, Any]] = []
    each = duration / rounds
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as profiles:
        async with chromium_browsers(Path(profiles)) as chromium:
            player = await open_page(chromium, base, "player")
            sender = await open_page(chromium, base, "sender")
            for _ in range(rounds):
                edged = await asyncio.to_thread(start_edged, url, audio)
                try:
                    await player.wait_playing("edged-cam", timeout=30)
                    whep = await whep_play(chromium, base)
                    tile, tab = await asyncio.gather(
                        measure(player, "edged-cam", each), measure_whep(whep, each)
                    )
                    edged_rounds.append(tile)
                    whep_rounds.append(tab)
                    await whep.page.close()
                finally:
                    await asyncio.to_thread(edged.communicate, "", 30)
                await gone(player, "edged-cam")
                await sender.publish("timecode")
                chromium_rounds.append(await measure(player, "sender-cam", each))
                await sender.page.click("#unpublish")
                await sender.page.click("#camera")  # stop the source: the next one starts anew
                await gone(player, "sender-cam")
    await runner.cleanup()
    return {
        "edged": summarize(edged_rounds),
        "whep": summarize(whep_rounds),
        "chromium": summarize(chromium_rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per path, 2 rounds")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per path")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the two paths")
    parser.add_argument(
        "--with-audio",
        action="store_true",
        help="edged also publishes its tone (the browser then delays video for lip sync)",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role in ("edged-publisher", "edged-publisher-with-audio"):
        asyncio.run(edged_publisher(args.url, audio=args.role.endswith("audio")))
        return
    duration = 4.0 if args.quick else args.duration
    rounds = 2 if args.quick else max(1, args.rounds)

    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    chromium_version = subprocess.run(
        ["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"# namespace {ns.name}, {WIDTH}x{HEIGHT}@{FPS:g}, {duration:g} s measured per path "
        f"in {rounds} rounds (each after {WARMUP_S:g} s warm-up), cpu {os.cpu_count()}, "
        f"{chromium_version}"
    )
    results = asyncio.run(run(duration, rounds, args.with_audio))
    edged, whep, chromium = results["edged"], results["whep"], results["chromium"]
    print(
        f"{'path':<22}{'p50 ms':>8}{'p95 ms':>8}{'arrival p50/p95':>17}{'frames':>8}"
        f"{'missing':>8}  p50 per round"
    )
    paths = (
        ("edged -> Chromium", edged),
        ("edged -> WHEP tab", whep),
        ("Chromium -> Chromium", chromium),
    )
    for name, r in paths:
        print(
            f"{name:<22}{r['p50']:>8}{r['p95']:>8}"
            f"{str(r['received_p50']) + ' / ' + str(r['received_p95']):>17}{r['frames']:>8}"
            f"{r['missing']:>8}  {r['round_p50']}"
        )
        print(f"{'':<22}{r['quality']}")
    ratio = edged["p50"] / chromium["p50"] if chromium["p50"] else float("nan")
    whep_ratio = whep["p50"] / chromium["p50"] if chromium["p50"] else float("nan")
    print(f"ratio p50 edged/Chromium: {ratio:.2f} (goal <= {GOAL_RATIO})")
    print(f"ratio p50 WHEP tab/Chromium: {whep_ratio:.2f} (goal <= {GOAL_RATIO})")
    print(
        json.dumps(
            {
                "edged_to_chromium_p50_ms": edged["p50"],
                "edged_to_chromium_p95_ms": edged["p95"],
                "chromium_to_chromium_p50_ms": chromium["p50"],
                "chromium_to_chromium_p95_ms": chromium["p95"],
                "ratio": round(ratio, 3),
                "edged_to_whep_p50_ms": whep["p50"],
                "edged_to_whep_p95_ms": whep["p95"],
                "whep_ratio": round(whep_ratio, 3),
                "edged_to_whep_frames": whep["frames"],
                "edged_to_chromium_round_p50_mean_ms": edged["round_p50_mean"],
                "chromium_to_chromium_round_p50_mean_ms": chromium["round_p50_mean"],
                "edged_to_chromium_arrival_p50_ms": edged["received_p50"],
                "chromium_to_chromium_arrival_p50_ms": chromium["received_p50"],
                "edged_frames": edged["frames"],
                "chromium_frames": chromium["frames"],
                "duration_s": duration,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
