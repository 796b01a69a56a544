"""The seed's call with real media: A and B log in, B publishes, A plays, B leaves.

Starts a room server on 127.0.0.1 and two engines in this process. B publishes the
time-code test pattern and a 440 Hz tone over WebRTC (H.264 + Opus); A plays it,
decodes the time codes and prints every event it receives, the latency of the frames
and the tone it hears. As root it runs inside a private network namespace, like the
tests. Usage: python examples/seed_call.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from typing import Any

from aiohttp import web

from edged.engine.config import EngineProfile, RoomConfig, VideoConfig
from edged.engine.engine import Engine
from edged.engine.events import (
    Event,
    EventHandler,
    PlayerQualityUpdate,
    PublisherQualityUpdate,
)
from edged.media.sinks.analysis import AnalysisSink
from edged.model import User
from edged.server.app import RoomServer
from edged.server.settings import ServerSettings
from edged.tokens import generate_secret


class Printer(EventHandler):
    """Prints every event of one engine."""

    def __init__(self, who: str) -> None:
        self.who = who

    def on_event(self, event: Event) -> None:
        if not isinstance(event, PublisherQualityUpdate | PlayerQualityUpdate):
            print(f"  {self.who}: {event.NAME}{tuple(_plain(a) for a in event.args())}")


def _plain(value: Any) -> Any:
    if hasattr(value, "name") and hasattr(value, "value"):
        return value.name
    if isinstance(value, list):
        return [getattr(v, "stream_id", None) or getattr(v, "user_id", v) for v in value]
    return value


async def main(seconds: float) -> None:
    secret = generate_secret()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = web.AppRunner(RoomServer(ServerSettings(apps={"demo": secret})).make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"ws://127.0.0.1:{port}/ws"
    print(f"room server on {url}")

    def profile() -> EngineProfile:
        return EngineProfile("demo", url, app_secret=secret, video=VideoConfig(640, 480, 30.0))

    a, b, sink = Engine(profile(), Printer("A")), Engine(profile(), Printer("B")), AnalysisSink()
    print("A logs into room r1 (with user notifications)")
    await a.login_room("r1", User("A", "Alice"), RoomConfig(user_update=True))
    print("B logs into room r1")
    await b.login_room("r1", User("B", "Bob"))
    print("B publishes s1 (test pattern + tone)")
    await b.start_publishing("s1")
    await asyncio.sleep(0.2)
    print("A plays s1")
    await a.start_playing("s1", sink)
    await asyncio.sleep(seconds)
    if sink.video is not None:
        st = sink.video.stats()
        print(
            f"A decoded {st.decoded} frames' time codes, {st.missing} missing, "
            f"latency p50 {st.latency_p50_ms:.0f} ms p95 {st.latency_p95_ms:.0f} ms"
        )
    if sink.audio is not None:
        print(f"A hears {sink.audio.dominant_frequency():.1f} Hz")
    print("B logs out")
    await b.destroy()
    await asyncio.sleep(0.3)
    await a.destroy()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long A plays")
    args = parser.parse_args()
    if os.geteuid() == 0:
        from edged.testing.netns import enter_test_namespace

        enter_test_namespace()
    asyncio.run(main(args.seconds))
