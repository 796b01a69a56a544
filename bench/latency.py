"""Glass-to-glass latency and login-to-first-frame, edged vs a plain aiortc call.

Publisher and player run in separate processes and talk through a room server, all
inside a private network namespace. The publisher sends the time-code test pattern
(640x480@30, H.264); the player decodes every frame's capture time and compares it with
its arrival time (same machine, same clock). The anchor is a plain two-peer aiortc call
(aiortc encodes the frames itself) measured in the same run.

    python bench/latency.py [--quick] [--duration S]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP, SECRET = "bench", "bench-secret-0123456789-0123456789-abcdef"
WIDTH, HEIGHT, FPS, BITRATE = 640, 480, 30.0, 1_000_000
WARMUP_S = 2.0


# ---- roles (each runs in its own process) --------------------------------------------


async def edged_publisher(url: str) -> None:
    from edged.engine.config import EngineProfile, VideoConfig
    from edged.engine.engine import Engine
    from edged.model import User

    profile = EngineProfile(
        APP, url, app_secret=SECRET, video=VideoConfig(WIDTH, HEIGHT, FPS, BITRATE)
    )
    async with Engine(profile) as engine:
        await engine.login_room("bench", User("pub"))
        await engine.start_publishing("bench")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def edged_player(url: str, duration: float) -> dict[str, Any]:
    from edged.engine.config import EngineProfile
    from edged.engine.engine import Engine
    from edged.engine.events import EventHandler
    from edged.media.sinks.analysis import VideoCodeSink
    from edged.model import User

    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    class FirstFrame(EventHandler):
        def player_recv_video_first_frame(self, stream_id: str) -> None:
            if not first.done():
                first.set_result(time.monotonic())

    class Sink:
        video: VideoCodeSink | None = None

        def attach(self, track: Any) -> None:
            if track.kind == "video":
                self.video = VideoCodeSink(track)
                self.video.start()

        async def close(self) -> None:
            if self.video is not None:
                await self.video.close()

    sink = Sink()
    async with Engine(EngineProfile(APP, url, app_secret=SECRET), FirstFrame()) as engine:
        started = time.monotonic()
        await engine.login_room("bench", User("player"))
        await engine.start_playing("bench", sink)
        first_frame_ms = (await asyncio.wait_for(first, 10) - started) * 1000
        return await measure(sink, duration, first_frame_ms)


async def measure(sink: Any, duration: float, first_frame_ms: float) -> dict[str, Any]:
    await asyncio.sleep(WARMUP_S)
    assert sink.video is not None
    sink.video.observations.clear()
    await asyncio.sleep(duration)
    stats = sink.video.stats()
    return {
        "first_frame_ms": round(first_frame_ms, 1),
        "p50": round(stats.latency_p50_ms, 1),
        "p95": round(stats.latency_p95_ms, 1),
        "frames": len(sink.video.observations),
        "missing": stats.missing,
    }


async def plain_publisher(url: str) -> None:
    """aiortc as its examples use it: addTrack, aiortc encodes for the one viewer."""
    from edged.engine.peer import local_description, make_peer_connection, to_rtc
    from edged.engine.signaling import SignalingClient
    from edged.media.aiortc.codec_choice import prefer_codec
    from edged.media.sources.testpattern import TestPatternTrack
    from edged.protocol import LinkOpen, Login, Publish, Signal, SignalRelay
    from edged.tokens import mint

    pcs: dict[str, Any] = {}

    async def handle(msg: Any) -> None:
        if isinstance(msg, LinkOpen):
            pc = pcs[msg.link_id] = make_peer_connection([])
            sender = pc.addTrack(TestPatternTrack(WIDTH, HEIGHT, FPS))
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
            prefer_codec(transceiver, "video/H264")
            await pc.setLocalDescription(await pc.createOffer())
            await client.send(Signal(link_id=msg.link_id, description=local_description(pc)))
        elif isinstance(msg, SignalRelay) and msg.description is not None:
            await pcs[msg.link_id].setRemoteDescription(to_rtc(msg.description))

    client = SignalingClient(url, lambda m: asyncio.ensure_future(handle(m)), lambda *a: None)
    await client.login(
        Login(app_id=APP, room_id="plain", user_id="pub", token=mint(SECRET, APP, "pub", 600))
    )
    await client.request(Publish(stream_id="plain"))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for pc in pcs.values():
        await pc.close()
    await client.close()


async def plain_player(url: str, duration: float) -> dict[str, Any]:
    from edged.engine.peer import local_description, make_peer_connection, to_rtc
    from edged.engine.signaling import SignalingClient
    from edged.media.sinks.analysis import VideoCodeSink
    from edged.protocol import Login, Play, Signal, SignalRelay
    from edged.tokens import mint

    class Sink:
        video: VideoCodeSink | None = None

    sink = Sink()
    got_track: asyncio.Future[VideoCodeSink] = asyncio.get_running_loop().create_future()
    pc = make_peer_connection([])

    @pc.on("track")
    def on_track(track: Any) -> None:
        sink.video = VideoCodeSink(track)
        sink.video.start()
        if not got_track.done():
            got_track.set_result(sink.video)

    async def handle(msg: Any) -> None:
        if isinstance(msg, SignalRelay) and msg.description is not None:
            await pc.setRemoteDescription(to_rtc(msg.description))
            await pc.setLocalDescription(await pc.createAnswer())
            await client.send(Signal(link_id=msg.link_id, description=local_description(pc)))

    client = SignalingClient(url, lambda m: asyncio.ensure_future(handle(m)), lambda *a: None)
    started = time.monotonic()
    await client.login(
        Login(app_id=APP, room_id="plain", user_id="player", token=mint(SECRET, APP, "player", 600))
    )
    await client.request(Play(stream_id="plain"))
    video = await asyncio.wait_for(got_track, 10)
    await asyncio.wait_for(video.wait_for_codes(1), 10)
    first_frame_ms = (time.monotonic() - started) * 1000
    result = await measure(sink, duration, first_frame_ms)
    await pc.close()
    await client.close()
    return result


# ---- orchestration -------------------------------------------------------------------


def spawn(role: str, url: str, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, "--url", url, "--duration", str(duration)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_pair(kind: str, url: str, duration: float) -> dict[str, Any]:
    publisher = spawn(f"{kind}-publisher", url, duration)
    try:
        assert publisher.stdout is not None
        if publisher.stdout.readline().strip() != "ready":
            raise SystemExit(f"{kind} publisher failed to start")
        player = spawn(f"{kind}-player", url, duration)
        out, _ = player.communicate(timeout=duration + 60)
        if player.returncode != 0:
            raise SystemExit(f"{kind} player failed")
        return dict(json.loads(out.strip().splitlines()[-1]))
    finally:
        publisher.communicate(input="", timeout=30)


async def serve(port: int) -> Any:
    from aiohttp import web

    from edged.server.app import RoomServer
    from edged.server.settings import ServerSettings

    server = RoomServer(ServerSettings(apps={APP: SECRET}, port=port))
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per measurement")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    duration = 4.0 if args.quick else args.duration
    if args.role:
        roles = {"edged-publisher": edged_publisher, "plain-publisher": plain_publisher}
        if args.role in roles:
            asyncio.run(roles[args.role](args.url))
        else:
            player = edged_player if args.role == "edged-player" else plain_player
            print(json.dumps(asyncio.run(player(args.url, duration))), flush=True)
        return

    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(serve(port))
    url = f"ws://127.0.0.1:{port}/ws"
    import threading

    threading.Thread(target=loop.run_forever, daemon=True).start()
    print(
        f"# namespace {ns.name}, {WIDTH}x{HEIGHT}@{FPS:g} H.264 {BITRATE // 1000} kbit/s, "
        f"{duration:g} s measured after {WARMUP_S:g} s warm-up, cpu {os.cpu_count()}"
    )
    edged = run_pair("edged", url, duration)
    plain = run_pair("plain", url, duration)
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    print(
        f"{'path':<28}{'p50 ms':>9}{'p95 ms':>9}{'first frame ms':>16}{'frames':>8}{'missing':>9}"
    )
    for name, r in (("edged (encode-once)", edged), ("plain aiortc", plain)):
        print(
            f"{name:<28}{r['p50']:>9}{r['p95']:>9}{r['first_frame_ms']:>16}{r['frames']:>8}"
            f"{r['missing']:>9}"
        )
    ratio = edged["p50"] / plain["p50"] if plain["p50"] else float("nan")
    print(
        f"ratio p50 edged/plain: {ratio:.2f} (goal <= 1.1; p50 goal < 60 ms; first frame < 500 ms)"
    )
    print(
        json.dumps(
            {
                "latency_p50_ms": edged["p50"],
                "latency_p95_ms": edged["p95"],
                "first_frame_ms": edged["first_frame_ms"],
                "plain_aiortc_p50_ms": plain["p50"],
                "plain_aiortc_p95_ms": plain["p95"],
                "plain_first_frame_ms": plain["first_frame_ms"],
                "ratio_p50": round(ratio, 3),
                "frames": edged["frames"],
                "missing": edged["missing"],
                "duration_s": duration,
            }
        )
    )


if __name__ == "__main__":
    main()
