"""CPU of publishing 1280x720@30 H.264 to many viewers: encode once, pass-through, per viewer.

Each run starts a publishing process, N viewer processes and measures, over the same
window, the publishing process's CPU-seconds (getrusage of that process: all its
threads) per second of video, split into its event-loop thread (where the fan-out packs
once and sends to every viewer, and aiortc handles RTCP) and its other threads (the
encoders), and the frames every viewer received. Publisher and
viewers find each other through the room server (hosted by this script), all inside a
private network namespace. Viewers never decode: their receivers hand out the
reassembled H.264 frames (edged.media.aiortc.receivers.passthrough_receivers), which
they count. A run where a viewer gets under 95% of the frames sent, or where the source
could not keep its 30 fps, is invalid and marked so.

Paths measured, all from the same 60 frames rendered once at start-up and looped at
30 fps: by default FFmpeg's moving ``testsrc2`` (through PyAV's lavfi demuxer), whose
detail fills the pinned 2 Mbit/s as a camera's picture does; ``--content pattern``
takes edged's time-code test pattern instead, which compresses to about 150 kbit/s
(fewer packets per viewer: the figures of earlier runs). The stream's real bitrate is
measured and printed:

* once: edged's Engine publishing (encode once with libx264, pinned settings: preset
  ultrafast, 2 Mbit/s fixed, keyframe every 2 s) -> fan-out -> 1, 4, 8 viewers;
* passthrough: the same frames pre-encoded once at start-up with those settings and
  looped as av.Packet, what a hardware encoder gives -> fan-out -> 1, 4, 8 viewers;
* naive: plain aiortc, pc.addTrack(relay.subscribe(track)) per viewer: aiortc encodes
  for every viewer, with its own libx264 settings -> 1, 2, 4 viewers.

    python bench/fanout.py [--quick] [--duration S] [--only passthrough_8,once_8]
                           [--content moving|pattern]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stamp  # bench/, beside this file

APP, SECRET = "bench", "bench-secret-0123456789-0123456789-abcdef"
WIDTH, HEIGHT, FPS, BITRATE, GOP_S = 1280, 720, 30, 2_000_000, 2.0
LOOP_FRAMES = 60
"""Frames rendered once and looped: one keyframe interval, so every loop starts at an IDR."""
WARMUP_S = 3.0
VALID_FRACTION = 0.95
RUNS = [
    ("once", 1),
    ("once", 4),
    ("once", 8),
    ("passthrough", 1),
    ("passthrough", 4),
    ("passthrough", 8),
    ("naive", 1),
    ("naive", 2),
    ("naive", 4),
]


def cpu_seconds() -> float:
    """CPU time of this whole process (every thread), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loop_cpu_seconds() -> float:
    """CPU time of the main thread alone: the event loop, where aiortc sends to viewers."""
    with open(f"/proc/self/task/{os.getpid()}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_background: set[asyncio.Task[None]] = set()


def background(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` as a task kept alive until it ends (signaling handlers)."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


Counts = Callable[[], Awaitable[dict[str, float]]]
"""A process's cumulative counts (frames, bytes), sampled as a window opens and closes."""


async def serve_commands(
    counts: Counts, latencies: list[float] | None = None, facts: dict[str, Any] | None = None
) -> None:
    """Say ready, then answer ``start`` / ``stop`` from stdin with this process's figures:
    its CPU and the growth of ``counts`` over the window, the ``latencies`` (ms) it
    collected in the window, and its ``facts``."""
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    start: dict[str, float] = {}
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        now = {"seconds": time.monotonic(), "cpu": cpu_seconds(), "loop_cpu": loop_cpu_seconds()}
        now |= await counts()
        if line == "start":
            start = now
            if latencies is not None:
                latencies.clear()
        elif line == "stop":
            figures: dict[str, Any] = {key: now[key] - start[key] for key in now}
            figures["latency_ms"] = list(latencies or ())
            figures |= facts or {}
            print(json.dumps(figures), flush=True)
        else:
            return


def frames_of(count: Callable[[], int]) -> Counts:
    async def counts() -> dict[str, float]:
        return {"frames": count()}

    return counts


# ---- the publishing side --------------------------------------------------------------


CONTENTS = ("moving", "pattern")


def prerender(content: str) -> list[Any]:
    """The looped frames: FFmpeg's ``testsrc2`` (``moving``) or edged's test pattern."""
    if content == "pattern":
        from edged.media.sources.testpattern import TestPatternRenderer

        renderer = TestPatternRenderer(WIDTH, HEIGHT, FPS)
        return [renderer.render(i) for i in range(LOOP_FRAMES)]
    import av

    frames: list[Any] = []
    with av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", format="lavfi") as source:
        for frame in source.decode(video=0):
            frames.append(frame.reformat(format="yuv420p"))
            if len(frames) == LOOP_FRAMES:
                break
    return frames


def preencode(frames: list[Any], gop_s: float = GOP_S) -> list[bytes]:
    """Each frame as one Annex-B access unit, encoded at the pinned settings."""
    from edged.media.encoders.libx264 import H264Encoder

    encoder = H264Encoder(pinned_settings(gop_s))
    return [b"".join(bytes(p) for p in encoder.encode(f)) for f in frames]


def pinned_settings(gop_s: float = GOP_S) -> Any:
    from edged.media.encoders.libx264 import H264Settings

    return H264Settings(
        bitrate=BITRATE,
        max_bitrate=BITRATE,
        min_bitrate=BITRATE,
        keyframe_interval=gop_s,
        framerate=FPS,
        preset="ultrafast",
    )


def looped_track(items: list[Any], packets: bool, keyframe: bytes | None = None) -> Any:
    """A live track replaying ``items`` (frames, or Annex-B access units) at 30 fps.

    Access units carry their send time (bench/stamp.py). With ``keyframe`` (an IDR),
    ``items`` are the P frames of a long GOP and the IDR goes out first and whenever the
    fan-out asks, as a camera's encoder does on request; nothing else is an IDR.
    """
    import av
    from aiortc.mediastreams import MediaStreamError

    from edged.media.clock import Pacer
    from edged.media.h264 import VIDEO_TIME_BASE
    from edged.media.sources.base import NOTHING, Capabilities, SourceTrack

    slices = {id(unit): stamp.first_slice(unit) for unit in items if isinstance(unit, bytes)}
    if keyframe is not None:
        slices[id(keyframe)] = stamp.first_slice(keyframe)

    class Looped(SourceTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.pacer = Pacer(1 / FPS)
            self.sent = 0
            self.looped = 0
            self.keyframe_due = keyframe is not None

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(keyframe_on_request=True) if keyframe is not None else NOTHING

        def request_keyframe(self) -> None:
            self.keyframe_due = True

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            slot = await self.pacer.next_slot()
            if self.keyframe_due and keyframe is not None:
                item, self.keyframe_due = keyframe, False
            else:
                item, self.looped = items[self.looped % len(items)], self.looped + 1
            out = av.Packet(stamp.stamped(item, slices[id(item)])) if packets else item
            out.pts, out.time_base = slot * (90000 // FPS), VIDEO_TIME_BASE
            self.sent += 1
            return out

    return Looped()


async def wire_bytes(pcs: list[Any]) -> float:
    """What peer connections sent on the wire: SRTP/SRTCP bytes (aiortc's transport
    stats, which edged's direct send path keeps too) plus 28 bytes of UDP and IPv4
    headers per packet. STUN consent checks are left out (a few per second)."""
    total = 0.0
    for pc in pcs:
        for stat in (await pc.getStats()).values():
            if stat.type == "transport":
                total += stat.bytesSent + 28 * stat.packetsSent
    return total


async def edged_publisher(
    url: str, room: str, content: str, gop_s: str = str(GOP_S), *, passthrough: bool
) -> None:
    """edged's Engine publishing the looped frames (or, ``passthrough``, their access
    units encoded once here); a GOP longer than the loop sends its IDR only on request."""
    from edged.engine.config import EngineProfile, PublishConfig, VideoConfig
    from edged.engine.engine import Engine
    from edged.model import User

    frames = prerender(content)
    keyframe: bytes | None = None
    if passthrough:
        items: list[Any] = preencode(frames, float(gop_s))
        if float(gop_s) * FPS > LOOP_FRAMES:
            keyframe, items = items[0], items[1:]
    else:
        items = frames
    track = looped_track(items, packets=passthrough, keyframe=keyframe)
    video = VideoConfig(WIDTH, HEIGHT, FPS, BITRATE, BITRATE, BITRATE, float(gop_s))
    profile = EngineProfile(
        APP, url, app_secret=SECRET, video=video, video_source=lambda _config: track
    )
    async with Engine(profile) as engine:
        await engine.login_room(room, User("pub"))
        await engine.start_publishing("cam", PublishConfig(audio=False))
        publisher = engine._room.publishers["cam"]  # type: ignore[union-attr]  # its links' pcs

        async def counts() -> dict[str, float]:
            links = [link.pc for link in publisher.links.values()]
            return {"frames": track.sent, "wire_bytes": await wire_bytes(links)}

        await serve_commands(counts)


async def naive_publisher(url: str, room: str, content: str) -> None:
    """aiortc as its examples use it: a relay, addTrack per viewer, aiortc encodes each."""
    from aiortc.contrib.media import MediaRelay

    from edged.engine.peer import local_description, make_peer_connection, to_rtc
    from edged.engine.signaling import SignalingClient
    from edged.media.aiortc.codec_choice import prefer_codec
    from edged.protocol import LinkOpen, Login, Publish, Signal, SignalRelay
    from edged.tokens import mint

    track = looped_track(prerender(content), packets=False)
    relay = MediaRelay()
    pcs: dict[str, Any] = {}

    async def handle(msg: Any) -> None:
        if isinstance(msg, LinkOpen):
            pc = pcs[msg.link_id] = make_peer_connection([])
            sender = pc.addTrack(relay.subscribe(track))
            transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
            prefer_codec(transceiver, "video/H264")
            await pc.setLocalDescription(await pc.createOffer())
            await client.send(Signal(link_id=msg.link_id, description=local_description(pc)))
        elif isinstance(msg, SignalRelay) and msg.description is not None:
            await pcs[msg.link_id].setRemoteDescription(to_rtc(msg.description))

    client = SignalingClient(url, lambda m: background(handle(m)), lambda *a: None)
    await client.login(
        Login(app_id=APP, room_id=room, user_id="pub", token=mint(SECRET, APP, "pub", 600))
    )
    await client.request(Publish(stream_id="cam", audio=False))
    await serve_commands(frames_of(lambda: int(track.sent)))
    for pc in pcs.values():
        await pc.close()
    await client.close()


# ---- a viewer (never decodes) ---------------------------------------------------------


async def viewer(url: str, room: str, name: str) -> None:
    """Plays ``cam`` without decoding: counts its frames, reads each one's latency from
    its stamp, and says how long after asking to play the first keyframe came."""
    from aiortc.mediastreams import MediaStreamError

    from edged.engine.peer import local_description, make_peer_connection, to_rtc
    from edged.engine.signaling import SignalingClient
    from edged.media.aiortc.receivers import passthrough_receivers
    from edged.media.h264 import is_keyframe
    from edged.protocol import Login, Play, Signal, SignalRelay
    from edged.tokens import mint

    latencies: list[float] = []
    first_keyframe: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    with passthrough_receivers(["video"]) as counter:
        pc = make_peer_connection([])
        readers: list[asyncio.Task[None]] = []

        async def drain(track: Any) -> None:
            try:
                while True:
                    data = bytes(await track.recv())
                    sent = stamp.read_stamp(data)
                    if sent is not None:
                        latencies.append((time.monotonic_ns() - sent) / 1e6)
                    if not first_keyframe.done() and is_keyframe(data):
                        first_keyframe.set_result(time.monotonic())
            except MediaStreamError:
                pass

        pc.on("track", lambda track: readers.append(asyncio.ensure_future(drain(track))))

        async def handle(msg: Any) -> None:
            if isinstance(msg, SignalRelay) and msg.description is not None:
                await pc.setRemoteDescription(to_rtc(msg.description))
                await pc.setLocalDescription(await pc.createAnswer())
                await client.send(Signal(link_id=msg.link_id, description=local_description(pc)))

        client = SignalingClient(url, lambda m: background(handle(m)), lambda *a: None)
        await client.login(
            Login(app_id=APP, room_id=room, user_id=name, token=mint(SECRET, APP, name, 600))
        )
        asked = time.monotonic()
        await client.request(Play(stream_id="cam"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(first_keyframe), 20)
        first_ms = 1000 * (first_keyframe.result() - asked) if first_keyframe.done() else None

        async def counts() -> dict[str, float]:
            """Frames, and the video's RTP packets lost on the way (sequence gaps)."""
            report = await pc.getStats()
            inbound = [s for s in report.values() if s.type == "inbound-rtp" and s.kind == "video"]
            lost = sum(int(s.packetsLost) for s in inbound)
            return {"frames": counter.frames.get("video", 0), "packets_lost": lost}

        await serve_commands(counts, latencies, {"first_keyframe_ms": first_ms})
        for task in readers:
            task.cancel()
        await pc.close()
        await client.close()


# ---- orchestration --------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def expect_ready(process: subprocess.Popen[str], what: str) -> None:
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit(f"{what} failed to start")


def tell(processes: list[subprocess.Popen[str]], line: str) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()


def collect(processes: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Each process's figures (its answer to ``stop``), then tell them to quit."""
    figures = []
    for process in processes:
        assert process.stdout is not None
        figures.append(json.loads(process.stdout.readline()))
    tell(processes, "quit")
    return figures


def reap(processes: list[subprocess.Popen[str]]) -> None:
    """Tell every process to quit (again) and wait for it, killing one that takes over 20 s."""
    for process in processes:
        with contextlib.suppress(OSError):  # one that already ended
            tell([process], "quit")
    for process in processes:
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def run(
    mode: str,
    viewers: int,
    url: str,
    duration: float,
    content: str,
    window: Callable[[str], None] = lambda _edge: None,
) -> dict[str, Any]:
    """One measured run; ``window`` is called with "start" and "stop" as the window
    opens and closes in every process (bench/sfu.py samples Janus there)."""
    room = f"{mode}-{viewers}"
    publisher = spawn("naive" if mode == "naive" else f"edged-{mode}", url, room, content)
    children = [publisher]
    try:
        expect_ready(publisher, f"{mode} publisher")
        children += [spawn("viewer", url, room, f"v{i}") for i in range(viewers)]
        for child in children[1:]:
            expect_ready(child, "viewer")
        time.sleep(WARMUP_S)
        tell(children, "start")
        window("start")
        time.sleep(duration)
        tell(children, "stop")
        window("stop")
        figures = collect(children)
    finally:
        reap(children)
    pub, seen = figures[0], figures[1:]
    sent = max(pub["frames"], 1)
    delivered = [v["frames"] / sent for v in seen]
    source_rate = pub["frames"] / (pub["seconds"] * FPS)
    return {
        "cpu": pub["cpu"] / pub["seconds"],
        "loop_cpu": pub["loop_cpu"] / pub["seconds"],
        "delivered": delivered,
        "source_rate": source_rate,
        "valid": min(delivered) >= VALID_FRACTION and source_rate >= VALID_FRACTION,
        "viewer_cpu": sum(v["cpu"] / v["seconds"] for v in seen),
        "frames_sent": pub["frames"],
        "up_kbps": pub.get("wire_bytes", 0.0) * 8 / pub["seconds"] / 1000,
        "latency_p50_ms": stamp.p50([ms for v in seen for ms in v["latency_ms"]]),
    }


async def serve(port: int) -> Any:
    from edged.server.run import start_server
    from edged.server.settings import ServerSettings

    return await start_server(ServerSettings(apps={APP: SECRET}, port=port))


def room_server_thread() -> tuple[str, asyncio.AbstractEventLoop, Callable[[], None]]:
    """A room server on a free loopback port, its event loop on a thread of its own: its
    URL, that loop (for engines the caller runs beside it) and the function that stops it."""
    import socket
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(serve(port))
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)

    return f"ws://127.0.0.1:{port}/ws", loop, stop


def role(args: argparse.Namespace) -> None:
    name, rest = args.role[0], args.role[1:]
    if name == "viewer":
        asyncio.run(viewer(*rest))
    elif name == "naive":
        asyncio.run(naive_publisher(*rest))
    else:
        asyncio.run(edged_publisher(*rest, passthrough=name == "edged-passthrough"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per measurement")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument(
        "--only",
        help="comma-separated runs to measure (e.g. passthrough_8,once_8); default: all",
    )
    parser.add_argument(
        "--content",
        choices=CONTENTS,
        default="moving",
        help="looped frames: FFmpeg's testsrc2 (default) or edged's time-code test pattern",
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role(args)
        return
    duration = 4.0 if args.quick else args.duration

    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    url, _, stop_server = room_server_thread()
    import aiortc
    import av

    units = preencode(prerender(args.content))
    stream_kbps = sum(len(unit) for unit in units) * 8 * FPS / len(units) / 1000
    print(
        f"# namespace {ns.name}; {WIDTH}x{HEIGHT}@{FPS} H.264 pinned at {BITRATE // 1000} "
        f"kbit/s, {args.content} content: {stream_kbps:.0f} kbit/s; "
        f"{duration:g} s measured after {WARMUP_S:g} s warm-up; cpu {os.cpu_count()}; "
        f"python {platform.python_version()}, aiortc {aiortc.__version__}, PyAV {av.__version__}"
    )
    wanted = set(args.only.split(",")) if args.only else {f"{m}_{n}" for m, n in RUNS}
    unknown = wanted - {f"{m}_{n}" for m, n in RUNS}
    if unknown:
        raise SystemExit(f"unknown runs: {', '.join(sorted(unknown))}")
    results = {
        f"{mode}_{n}": run(mode, n, url, duration, args.content)
        for mode, n in RUNS
        if f"{mode}_{n}" in wanted
    }
    stop_server()
    report(results, duration, {"content": args.content, "stream_kbps": round(stream_kbps, 1)})


def report(results: dict[str, dict[str, Any]], duration: float, stream: dict[str, Any]) -> None:
    print(
        f"{'run':<13}{'viewers':>8}{'cpu s/s':>9}{'loop':>7}{'others':>8}{'min delivered':>15}"
        f"{'source fps':>12}{'viewers cpu':>13}  valid"
    )
    for key, r in results.items():
        mode, n = key.rsplit("_", 1)
        others = max(0.0, r["cpu"] - r["loop_cpu"])  # /proc counts in 10 ms ticks
        print(
            f"{mode:<13}{n:>8}{r['cpu']:>9.3f}{r['loop_cpu']:>7.3f}{others:>8.3f}"
            f"{min(r['delivered']):>15.3f}{r['source_rate'] * FPS:>12.1f}{r['viewer_cpu']:>13.3f}  "
            + ("yes" if r["valid"] else "NO: a viewer got < 95% of the frames or the source lagged")
        )
    cpu = {key: r["cpu"] for key, r in results.items()}
    goals: dict[str, Any] = {}
    if "once_1" in cpu and "once_8" in cpu:
        scale = cpu["once_8"] / cpu["once_1"]
        goals |= {"once_8_over_once_1": round(scale, 3), "goal_once_scaling_met": scale <= 1.5}
        print(f"once_8/once_1 = {scale:.2f} (goal <= 1.5)")
    if "passthrough_8" in cpu and "once_8" in cpu:
        share = cpu["passthrough_8"] / cpu["once_8"]
        goals |= {
            "passthrough_8_over_once_8": round(share, 3),
            "goal_passthrough_met": share <= 0.15,
        }
        print(f"passthrough_8/once_8 = {share:.2f} (goal <= 0.15)")
    figures: dict[str, Any] = {}
    for key, r in results.items():
        figures[f"cpu_{key}"] = round(r["cpu"], 4)
    for key, r in results.items():
        figures[f"loop_cpu_{key}"] = round(r["loop_cpu"], 4)
    for key, r in results.items():
        figures[f"delivered_{key}"] = round(min(r["delivered"]), 4)
        figures[f"valid_{key}"] = r["valid"]
    figures |= goals
    figures |= {"valid": all(r["valid"] for r in results.values()), "duration_s": duration}
    figures |= stream
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
