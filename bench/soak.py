"""Soak: a publishing daemon, two players and a busy MQTT channel for minutes; leaks and gaps.

Everything runs inside a private network namespace, each part in its own process:

* the room server (hosted by this script, as in ``bench/latency.py``);
* a Mosquitto broker on a free port of 127.0.0.1;
* the daemon, ``edged run`` on a generated configuration, publishing the time-code test
  pattern (320x240@30, H.264) and the 440 Hz tone. It runs as ``soak.py --role daemon``,
  which calls ``edged.cli.main(["run", "--config", FILE])`` unchanged and adds one thread
  that answers this script's samples on the daemon's event loop (its task count and how
  late the loop ran the request), since nothing outside the process can count tasks;
* two players, each an ``Engine`` in its own process with an ``AnalysisSink`` that reads
  every decoded frame's time code: frames must come in order with no sequence number
  missing and no stall over 200 ms, and the tone must be heard;
* an MQTT client here that keeps the daemon's control channel busy: a command every 2 s
  (``get_state``, ``snapshot``, ``renew_token``), a burst of 8 ``get_state`` every minute,
  video and audio muted for 3 s every minute, and ``stop_publishing`` /
  ``start_publishing`` every 3 minutes, after which both players must play again. Each
  command must be answered (within 10 s, ``ok``); tokens live 3 minutes, so every engine
  also renews its own token about every 2 minutes.

Every 5 s (2 s with ``--quick``) it samples each process's RSS, open file descriptors and
threads from /proc, the asyncio tasks of the daemon, server and players, the players'
frame counters, and the machine's load. After the warm-up, a least-squares slope of RSS
(KB/min) and the first and last quarters of the file-descriptor, thread and task counts
decide the leak verdict. Frame gaps inside the planned windows (mute, stop/start, the
object census) are counted apart from the others; re-plays are counted and timed.

    python bench/soak.py [--quick] [--duration S] [--restart-every S] [--keep] [--tracemalloc]

``--quick`` runs about 60 s; the default 600 s. ``--tracemalloc`` traces allocations in
every Python process (slow: for finding a leak, not for figures) and prints what grew
between the two object censuses (end of warm-up, end of run). Prints tables, then one
JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP, SECRET = "soak", "soak-secret-0123456789-0123456789-abcdef"
ROOM, DEVICE = "soak", "soakcam"
STREAM = f"{DEVICE}-cam"
PLAYERS = ("viewer1", "viewer2")
WIDTH, HEIGHT, FPS, BITRATE = 320, 240, 30, 300_000
TONE_HZ = 440.0
TOKEN_TTL_S = 180
STALL_MS = 200
"""Two decoded frames further apart than this are a stall (a gap even with no frame lost)."""
COMMAND_EVERY_S, BURST_EVERY_S, BURST = 2.0, 60.0, 8
MUTE_EVERY_S, MUTE_S = 60.0, 3.0
RESTART_EVERY_S, RESTART_PAUSE_S = 180.0, 2.0
COMMAND_TIMEOUT_S = 10.0
GRACE_MS = {"mute": 2_000, "restart": 10_000, "census": 1_000}
"""How long after a planned window ends its effects still count as planned."""
REPLAY_LIMIT_MS = 5_000
"""A re-play slower than this (start_publishing sent -> first decoded frame) is flagged."""
LEAK_RSS_KB_PER_MIN = 100.0
"""About 144 MB a day: more than a board running for weeks can afford."""
LEAK_RSS_MIN_GROWTH_KB = 1024
JUDGE_MIN_S = 300
HEAP_KEYS = ("heap_kb", "heap_used_kb", "heap_free_kb", "mmap_kb")
PROGRESS_EVERY_S = 60.0
"""Shorter runs report their figures but no leak verdict."""
TAG = "SOAK "
PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |^Traceback")
PREFIX = f"edged/{DEVICE}"


def report(figures: dict[str, Any]) -> None:
    """One line for the orchestrator on stdout (other output is ignored)."""
    sys.stdout.write(TAG + json.dumps(figures) + "\n")
    sys.stdout.flush()


def census() -> dict[str, int]:
    """Live objects per type (after a full collection), for types with 50 or more, and
    Python threads per name (``thread <name>``, the pool's index stripped)."""
    gc.collect()
    counts = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
    threads = collections.Counter(
        "thread " + re.sub(r"_\d+$", "", t.name) for t in threading.enumerate()
    )
    return {name: n for name, n in counts.items() if n >= 50} | dict(threads)


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 and later): the C heap of every arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_figures() -> dict[str, int]:
    """The C heap (glibc ``mallinfo2``), KB: ``heap_kb`` taken from the system by the
    arenas (mapped blocks apart), ``heap_used_kb`` in use in them, ``heap_free_kb`` free
    in them, ``mmap_kb`` in blocks of their own. Empty where glibc has no ``mallinfo2``."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return {}
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return {
        "heap_kb": info.arena // 1024,
        "heap_used_kb": info.uordblks // 1024,
        "heap_free_kb": info.fordblks // 1024,
        "mmap_kb": info.hblkhd // 1024,
    }


def arena_count() -> int | None:
    """How many malloc arenas the process has (from glibc's ``malloc_info``)."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "open_memstream"):
        return None
    buf, size = ctypes.c_char_p(), ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    text = ctypes.string_at(buf, size.value).decode(errors="replace")
    libc.free(buf)
    return text.count("<heap nr=")


class Control:
    """Owns the thread that reads the orchestrator's lines on stdin and answers each on
    the process's event loop: ``sample N`` (tasks, loop lag, the role's figures),
    ``census``, ``final``; ``quit`` or the end of stdin calls ``on_quit``."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures
        self.final: Callable[[], dict[str, Any]] = dict
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_quit: Callable[[], None] = lambda: None

    def start(self) -> None:
        threading.Thread(target=self._read, name="soak-control", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._answer, words, time.monotonic())
        self.on_quit()

    def _answer(self, words: list[str], sent: float) -> None:
        lag_ms = round((time.monotonic() - sent) * 1000, 1)
        if words[0] == "sample":
            tasks = len(asyncio.all_tasks())
            report(
                {
                    "tick": int(words[1]),
                    "lag_ms": lag_ms,
                    "tasks": tasks,
                    **heap_figures(),
                    **self.figures(),
                }
            )
        elif words[0] == "census":
            if tracemalloc.is_tracing():
                snapshots = os.environ["SOAK_SNAPSHOTS"]
                tracemalloc.take_snapshot().dump(f"{snapshots}.{words[1]}")
            report({"census": census() | {"malloc arenas": arena_count() or 0}})
        elif words[0] == "final":
            report({"final": self.final()})


# ---- the daemon: edged run, unchanged, plus the control thread -------------------------


def daemon_role(config: str) -> int:
    control = Control(dict)

    class RecordingPolicy(asyncio.DefaultEventLoopPolicy):
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            loop = super().new_event_loop()
            control.loop = loop
            return loop

    asyncio.set_event_loop_policy(RecordingPolicy())
    control.start()
    from edged.cli import main as edged_main

    return edged_main(["run", "--config", config])


def daemon_config(path: Path, url: str, mqtt_port: int) -> None:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "device": {"id": DEVICE, "name": "Soak camera"},
                "room": {
                    "server_url": url,
                    "app_id": APP,
                    "app_secret": SECRET,
                    "room_id": ROOM,
                    "user_id": DEVICE,
                    "token_ttl_s": TOKEN_TTL_S,
                },
                "auto": {"publish": {"stream_id": STREAM}},
                "video": {
                    "source": "testpattern",
                    "width": WIDTH,
                    "height": HEIGHT,
                    "fps": FPS,
                    "bitrate": BITRATE,
                },
                "audio": {"source": "tone"},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": mqtt_port,
                    "quality_interval_s": 1,
                    "snapshot_interval_s": 30,
                },
                "timers": {"quality_interval_s": 1},
                "logging": {"journald": False},
            }
        )
    )


# ---- the room server --------------------------------------------------------------------


async def server_role(port: int) -> None:
    from aiohttp import web

    from edged.server.app import RoomServer
    from edged.server.settings import ServerSettings

    server = RoomServer(ServerSettings(apps={APP: SECRET}, port=port))
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    loop, done = asyncio.get_running_loop(), asyncio.Event()
    control = Control(lambda: {"connections": len(server.connections)})
    control.loop, control.on_quit = loop, lambda: loop.call_soon_threadsafe(done.set)
    control.start()
    report({"ready": True})
    await done.wait()
    await runner.cleanup()


# ---- a player ---------------------------------------------------------------------------


class FrameWatch:
    """Follows the time codes one player decodes, across re-plays: runs, gaps and stalls,
    order, latency. A new track starts a new run (its sequence numbers start afresh)."""

    def __init__(self) -> None:
        self.current: object | None = None
        self.last: Any = None
        self.runs = 0
        self.decoded = self.undecoded = self.missing = self.out_of_order = self.duplicates = 0
        self.events: list[dict[str, Any]] = []
        """Runs started and gaps, since the last sample."""
        self.max_dt_ms = 0
        """Longest interval between two frames that was not a gap, since the last sample."""
        self.latencies: list[int] = []
        """Latency of each frame since the last sample."""
        self.histogram: collections.Counter[int] = collections.Counter()

    def observe(self, sink: object, obs: Any) -> None:
        from edged.media.sources.timecode import sequence_gap

        if sink is not self.current:
            self.current, self.last = sink, None
            self.runs += 1
            self.events.append({"run": self.runs, "at": obs.arrival_ms})
        self.decoded += 1
        self.latencies.append(obs.latency_ms)
        self.histogram[obs.latency_ms] += 1
        last, self.last = self.last, obs
        if last is None:
            return
        gap = sequence_gap(last.sequence, obs.sequence)
        if gap < 0:
            self.last = last
            if gap == -1:
                self.duplicates += 1
            else:
                self.out_of_order += 1
            return
        dt = obs.arrival_ms - last.arrival_ms
        if gap > 0 or dt > STALL_MS:
            self.missing += gap
            self.events.append({"from": last.arrival_ms, "to": obs.arrival_ms, "missing": gap})
        else:
            self.max_dt_ms = max(self.max_dt_ms, dt)

    def sample(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        since = time.time_ns() // 1_000_000 - self.last.arrival_ms if self.last else None
        figures = {
            "runs": self.runs,
            "decoded": self.decoded,
            "undecoded": self.undecoded,
            "missing": self.missing,
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
            "since_last_ms": since,
            "max_dt_ms": self.max_dt_ms,
            "latency_p50_ms": lat[len(lat) // 2] if lat else None,
            "events": self.events,
        }
        self.events, self.latencies, self.max_dt_ms = [], [], 0
        return figures


def percentile(histogram: collections.Counter[int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return float(value)
    return float(max(histogram))


def watch_sink(watch: FrameWatch) -> Any:
    """An ``AnalysisSink`` whose video sinks report every decoded time code to ``watch``."""
    import av

    from edged.media.sinks.analysis import AnalysisSink, VideoCodeSink

    class WatchedVideo(VideoCodeSink):
        def _on_frame(self, frame: object) -> None:
            before = self.decoded
            super()._on_frame(frame)
            if self.decoded > before:
                watch.observe(self, self.observations[-1])
            elif isinstance(frame, av.VideoFrame):
                watch.undecoded += 1

    class WatchSink(AnalysisSink):
        audio_before = 0.0

        def attach(self, track: Any) -> None:
            if track.kind == "video":
                self.video = WatchedVideo(track, max_records=64)
                self.video.start()
                return
            if self.audio is not None:
                self.audio_before += self.audio.seconds_received
            super().attach(track)

        def audio_seconds(self) -> float:
            return self.audio_before + (self.audio.seconds_received if self.audio else 0.0)

    return WatchSink()


async def player_role(url: str, name: str) -> None:
    from edged.engine.config import EngineProfile
    from edged.engine.engine import Engine
    from edged.engine.events import EventHandler
    from edged.model import PlayerState, User

    watch = FrameWatch()
    sink = watch_sink(watch)
    changes: collections.Counter[str] = collections.Counter()

    class Notes(EventHandler):
        def room_state_changed(self, room_id: str, reason: Any, code: int, data: Any) -> None:
            changes[f"room_{reason.name.lower()}"] += 1

        def player_state_update(self, stream_id: str, state: Any, code: int, data: Any) -> None:
            if state == PlayerState.PLAY_REQUESTING:
                changes["play_requesting"] += 1

        def room_token_will_expire(self, room_id: str, remaining_s: float) -> None:
            changes["token_will_expire"] += 1

    def figures() -> dict[str, Any]:
        audio = sink.audio
        tone = audio is not None and audio.tone_present(TONE_HZ)
        return {**watch.sample(), "audio_s": round(sink.audio_seconds(), 2), "tone": tone}

    loop, done = asyncio.get_running_loop(), asyncio.Event()
    control = Control(figures)
    control.final = lambda: {
        "latency_p50_ms": percentile(watch.histogram, 0.5),
        "latency_p99_ms": percentile(watch.histogram, 0.99),
        "changes": dict(changes),
    }
    control.loop, control.on_quit = loop, lambda: loop.call_soon_threadsafe(done.set)
    profile = EngineProfile(APP, url, app_secret=SECRET, token_ttl_s=TOKEN_TTL_S)
    async with Engine(profile, Notes()) as engine:
        await engine.login_room(ROOM, User(name))
        await engine.start_playing(STREAM, sink)
        control.start()
        report({"ready": True})
        await done.wait()


# ---- orchestration: processes and /proc ------------------------------------------------


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict[str, float] | None:
    """RSS (KB), open fds, threads and CPU seconds of ``pid``, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", status, re.M)
    return {
        "rss": int(rss.group(1)) if rss else 0,
        "fds": fds,
        "threads": int(threads.group(1)) if threads else 0,
        "cpu": (int(stat[11]) + int(stat[12])) / CLOCK_TICK,
    }


def machine_figures() -> dict[str, float]:
    """The 1-minute load average, and busy and total CPU jiffies since boot."""
    load = float(Path("/proc/loadavg").read_text().split()[0])
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cpu[3] + cpu[4]
    return {"load": load, "busy": sum(cpu) - idle, "total": sum(cpu)}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Child:
    """One process of the soak: its subprocess, stderr log, and what it reported."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, controlled: bool) -> None:
        self.name, self.proc, self.controlled = name, proc, controlled
        self.ready = asyncio.Event()
        self.replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.censuses: asyncio.Queue[dict[str, int]] = asyncio.Queue()
        self.final: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.rows: list[dict[str, Any]] = []
        self.reader = asyncio.ensure_future(self._read()) if controlled else None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if not line.startswith(TAG):
                continue
            msg = json.loads(line[len(TAG) :])
            if "ready" in msg:
                self.ready.set()
            elif "census" in msg:
                self.censuses.put_nowait(msg["census"])
            elif "final" in msg:
                if not self.final.done():
                    self.final.set_result(msg["final"])
            elif "tick" in msg:
                self.events += msg.pop("events", [])
                self.replies[msg["tick"]] = msg

    def tell(self, line: str) -> None:
        if self.controlled and self.proc.stdin is not None and self.proc.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.proc.stdin.write(line.encode() + b"\n")

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


async def spawn(name: str, run: Run, *args: str) -> Child:
    env = dict(os.environ)
    if run.tracemalloc:
        env |= {"PYTHONTRACEMALLOC": "8", "SOAK_SNAPSHOTS": str(run.workdir / name)}
    with (run.workdir / f"{name}.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--role",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
    return Child(name, proc, controlled=True)


def mosquitto() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise SystemExit("mosquitto is not installed (scripts/setup installs it)")
    return exe


async def start_broker(workdir: Path) -> tuple[Child, int]:
    exe = mosquitto()
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
    )
    proc = await asyncio.create_subprocess_exec(exe, "-c", str(conf))
    for _ in range(250):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return Child("broker", proc, controlled=False), port
        await asyncio.sleep(0.02)
    raise SystemExit("mosquitto did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- orchestration: the MQTT channel ----------------------------------------------------


@dataclass
class Window:
    """A planned disturbance: its kind and wall-clock span (ms); ``end`` None while on."""

    kind: str
    start: int
    end: int | None = None
    requested: int | None = None
    """For a restart: when start_publishing was sent."""

    def covers(self, begin: int, finish: int) -> bool:
        end = (self.end if self.end is not None else now_ms()) + GRACE_MS[self.kind]
        return begin <= end and finish >= self.start - 200


@dataclass
class Channel:
    """The MQTT client that commands the daemon: sends, matches answers, times them."""

    client: Any
    windows: list[Window]
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    planned_failures: list[str] = field(default_factory=list)
    """Failures of commands sent while a planned window was on (snapshot while stopped)."""
    anomalies: list[str] = field(default_factory=list)
    topics: collections.Counter[str] = field(default_factory=collections.Counter)

    async def listen(self) -> None:
        async for message in self.client.messages:
            kind = str(message.topic).removeprefix(PREFIX + "/")
            self.topics[kind] += 1
            if kind == "command/response":
                body = json.loads(message.payload)
                future = self.pending.pop(body.get("request_id", ""), None)
                if future is not None and not future.done():
                    future.set_result(body)

    async def command(self, name: str, **args: Any) -> dict[str, Any] | None:
        self.sent += 1
        rid = f"soak-{self.sent}"
        future = self.pending[rid] = asyncio.get_running_loop().create_future()
        started, sent_ms = time.monotonic(), now_ms()
        payload = json.dumps({"command": name, "request_id": rid, **args})
        await self.client.publish(f"{PREFIX}/command", payload, qos=1)
        try:
            body = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            self.pending.pop(rid, None)
            self.fail(sent_ms, f"{name}: no answer in {COMMAND_TIMEOUT_S:g} s")
            return None
        self.latencies_ms.append((time.monotonic() - started) * 1000)
        if not body.get("ok"):
            self.fail(sent_ms, f"{name}: {body.get('error')}")
            return None
        return body

    def fail(self, sent_ms: int, text: str) -> None:
        planned = any(w.covers(sent_ms, now_ms()) for w in self.windows)
        stamp = time.strftime("%H:%M:%S", time.localtime(sent_ms / 1000))
        (self.planned_failures if planned else self.failures).append(f"{stamp} {text}")

    def planned_now(self) -> bool:
        t = now_ms()
        return any(w.covers(t, t) for w in self.windows)

    async def get_state(self) -> None:
        before = self.planned_now()
        body = await self.command("get_state")
        if body is None or before or self.planned_now():
            return
        state = body.get("result") or {}
        publisher = state.get("publisher") or {}
        if publisher.get("state") != "PUBLISHING" or publisher.get("viewers") != len(PLAYERS):
            self.anomalies.append(
                f"{time.strftime('%H:%M:%S')} publisher {publisher.get('state')} "
                f"viewers {publisher.get('viewers')}"
            )

    async def snapshot(self) -> None:
        body = await self.command("snapshot")
        if body is not None and not (body.get("result") or {}).get("bytes"):
            self.fail(now_ms(), "snapshot: no bytes")

    async def busy(self, stop_at: float) -> None:
        """A command every COMMAND_EVERY_S, a burst of get_state every BURST_EVERY_S."""
        rotation = [self.get_state, self.snapshot, self.get_state, self.renew]
        started, n, next_burst = time.monotonic(), 0, BURST_EVERY_S / 2
        while (now := time.monotonic()) < stop_at:
            if now - started >= next_burst:
                next_burst += BURST_EVERY_S
                await asyncio.gather(*(self.get_state() for _ in range(BURST)))
            else:
                await rotation[n % len(rotation)]()
                n += 1
            await asyncio.sleep(max(0.0, started + n * COMMAND_EVERY_S - time.monotonic()))

    async def renew(self) -> None:
        await self.command("renew_token")

    async def plan(self, schedule: list[tuple[float, str]], t0: float) -> None:
        for at, kind in schedule:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            window = Window(kind, now_ms())
            self.windows.append(window)
            if kind == "mute":
                for muted in (True, False):
                    await self.command("mute_publish_video", muted=muted)
                    await self.command("mute_publish_audio", muted=muted)
                    if muted:
                        await asyncio.sleep(MUTE_S)
            else:
                await self.command("stop_publishing")
                await asyncio.sleep(RESTART_PAUSE_S)
                window.requested = now_ms()
                await self.command("start_publishing")
            window.end = now_ms()


def schedule_for(
    duration: float, mute_every: float, restart_every: float
) -> list[tuple[float, str]]:
    """Restarts every ``restart_every`` s; mutes every ``mute_every`` s, none near a restart."""
    restarts = [restart_every * k for k in range(1, int(duration / restart_every) + 1)]
    restarts = [t for t in restarts if t < duration - 10]
    mutes = [mute_every * (k + 0.5) for k in range(int(duration / mute_every) + 1)]
    mutes = [t for t in mutes if t < duration - 5 and all(abs(t - r) > 15 for r in restarts)]
    return sorted([(t, "restart") for t in restarts] + [(t, "mute") for t in mutes])


# ---- orchestration: the run -------------------------------------------------------------


@dataclass
class Run:
    duration: float
    warmup: float
    sample_every: float
    schedule: list[tuple[float, str]]
    workdir: Path
    children: list[Child] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    machine: list[dict[str, float]] = field(default_factory=list)
    censuses: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    finals: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel: Channel | None = None
    tracemalloc: bool = False
    slope_from: float | None = None
    """Fit the RSS slopes that judge leaks only on samples from this many seconds on."""
    t0_ms: int = 0
    crashed: list[str] = field(default_factory=list)


async def take_census(run: Run) -> None:
    window = Window("census", now_ms())
    run.windows.append(window)
    controlled = [c for c in run.children if c.controlled and c.alive]
    number = max((len(v) for v in run.censuses.values()), default=0)
    for child in controlled:
        child.tell(f"census {number}")
    for child in controlled:
        with contextlib.suppress(TimeoutError):
            got = await asyncio.wait_for(child.censuses.get(), 60)
            run.censuses.setdefault(child.name, []).append(got)
    window.end = now_ms()


async def sampler(run: Run, t0: float, ticks: int) -> None:
    for tick in range(ticks + 1):
        await asyncio.sleep(max(0.0, t0 + tick * run.sample_every - time.monotonic()))
        run.machine.append({"t": tick * run.sample_every, **machine_figures()})
        for child in run.children:
            figures = proc_figures(child.proc.pid) if child.alive else None
            if figures is None:
                if child.name not in run.crashed:
                    run.crashed.append(child.name)
                continue
            child.rows.append({"tick": tick, "t": tick * run.sample_every, **figures})
            child.tell(f"sample {tick}")
        every = max(1, round(PROGRESS_EVERY_S / run.sample_every))
        if tick and tick % every == 0:
            print_progress(run, tick - 1)


def print_progress(run: Run, tick: int) -> None:
    """One line per minute with each controlled process's RSS and C heap, MB (answers
    to the sample before the last, which have come in), so a run cut short still tells."""
    parts = []
    for child in run.children:
        row = next((r for r in reversed(child.rows) if r["tick"] == tick), None)
        if row is None or not child.controlled:
            continue
        reply = child.replies.get(tick, {})
        heap = ""
        if reply.get("heap_kb") is not None:
            heap = (
                f" heap {reply['heap_kb'] / 1024:.1f} used {reply['heap_used_kb'] / 1024:.1f}"
                f" mmap {reply['mmap_kb'] / 1024:.1f}"
            )
        parts.append(f"{child.name} rss {row['rss'] / 1024:.1f}{heap}")
    print(f"# t {tick * run.sample_every:.0f} s: " + "; ".join(parts), flush=True)


async def orchestrate(args: argparse.Namespace, duration: float) -> dict[str, Any]:
    import aiomqtt

    quick = args.quick
    sample_every = 2.0 if quick else 5.0
    warmup = 15.0 if quick else min(60.0, duration / 4)
    mute_every = 20.0 if quick else MUTE_EVERY_S
    restart_every = args.restart_every or (30.0 if quick else RESTART_EVERY_S)
    workdir = Path(tempfile.mkdtemp(prefix="edged-soak-"))
    schedule = schedule_for(duration, mute_every, restart_every)
    run = Run(duration, warmup, sample_every, schedule, workdir, tracemalloc=args.tracemalloc)
    run.slope_from = args.slope_from
    try:
        return await soak(run, aiomqtt)
    finally:
        for child in reversed(run.children):
            if child.alive:
                child.proc.kill()
                await child.proc.wait()
        if args.keep or args.tracemalloc or run.crashed:
            print(f"# logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def soak(run: Run, aiomqtt: Any) -> dict[str, Any]:
    broker, mqtt_port = await start_broker(run.workdir)
    run.children.append(broker)
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    server = await spawn("server", run, "server", str(port))
    run.children.append(server)
    await asyncio.wait_for(server.ready.wait(), 30)
    config = run.workdir / "edged.yaml"
    daemon_config(config, url, mqtt_port)
    async with aiomqtt.Client("127.0.0.1", mqtt_port) as client:
        await client.subscribe(f"{PREFIX}/#", qos=1)
        channel = run.channel = Channel(client, run.windows)
        listener = asyncio.ensure_future(channel.listen())
        daemon = await spawn("daemon", run, "daemon", str(config))
        run.children.append(daemon)
        body = None
        for _ in range(60):
            body = await channel.command("get_state") if daemon.alive else None
            if body and (body["result"].get("publisher") or {}).get("state") == "PUBLISHING":
                break
            await asyncio.sleep(0.5)
        else:
            raise SystemExit(f"the daemon did not publish (log: {run.workdir}/daemon.log)")
        channel.sent, channel.latencies_ms, channel.failures = 0, [], []
        channel.planned_failures = []
        for name in PLAYERS:
            player = await spawn(name, run, "player", url, name)
            run.children.append(player)
            await asyncio.wait_for(player.ready.wait(), 30)
        await asyncio.sleep(2.0)  # first frames
        t0 = time.monotonic()
        run.t0_ms = now_ms()
        stop_at = t0 + run.duration
        ticks = int(run.duration / run.sample_every)
        jobs = [
            asyncio.ensure_future(sampler(run, t0, ticks)),
            asyncio.ensure_future(channel.busy(stop_at)),
            asyncio.ensure_future(channel.plan(run.schedule, t0)),
        ]
        await asyncio.sleep(max(0.0, t0 + run.warmup - time.monotonic()))
        await take_census(run)
        await asyncio.gather(*jobs)
        await asyncio.sleep(1.0)  # the last samples' answers
        await take_census(run)
        for child in run.children:
            child.tell("final")
        for child in run.children:
            if child.controlled and child.name in PLAYERS:
                with contextlib.suppress(TimeoutError):
                    run.finals[child.name] = await asyncio.wait_for(asyncio.shield(child.final), 10)
        for child in run.children:
            if child.name in PLAYERS:
                child.tell("quit")
        for child in run.children:
            if child.name in PLAYERS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.proc.wait(), 20)
        daemon.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(daemon.proc.wait(), 20)
        listener.cancel()
    server.tell("quit")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.proc.wait(), 20)
    if broker.alive:
        broker.proc.terminate()
        await broker.proc.wait()
    result = analyse(run)
    samples = {c.name: {"rows": c.rows, "replies": c.replies} for c in run.children}
    (run.workdir / "samples.json").write_text(json.dumps({"machine": run.machine, **samples}))
    return print_report(run, result)


# ---- analysis ----------------------------------------------------------------------------


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if not sxx:
        return 0.0
    return 60 * sum((t - mx) * (v - my) for t, v in points) / sxx


def floor_rose(values: list[float]) -> bool:
    """Whether the lowest value of the last quarter is above the highest of the first."""
    quarter = max(1, len(values) // 4)
    return len(values) >= 8 and min(values[-quarter:]) > max(values[:quarter])


def process_figures(run: Run, child: Child) -> dict[str, Any]:
    rows = [r for r in child.rows if r["t"] >= run.warmup] or child.rows
    if not rows:
        return {}
    for row in rows:
        reply = child.replies.get(row["tick"], {})
        row["tasks"], row["lag_ms"] = reply.get("tasks"), reply.get("lag_ms")
        for key in HEAP_KEYS:
            row[key] = reply.get(key)
    rss = [r["rss"] for r in rows]
    rss_slope = slope_per_min([(r["t"], r["rss"]) for r in rows])
    figures: dict[str, Any] = {
        "rss_start_kb": rss[0],
        "rss_end_kb": rss[-1],
        "rss_max_kb": max(rss),
        "rss_slope_kb_per_min": round(rss_slope, 1),
        "cpu_percent": round(
            100 * (child.rows[-1]["cpu"] - child.rows[0]["cpu"]) / max(child.rows[-1]["t"], 1), 1
        ),
    }
    for key in HEAP_KEYS:
        heap = [(r["t"], r[key]) for r in rows if r.get(key) is not None]
        if heap:
            figures |= {
                f"{key}_start": heap[0][1],
                f"{key}_end": heap[-1][1],
                f"{key}_slope_per_min": round(slope_per_min(heap), 1),
            }
    if run.slope_from is not None:
        window = [r for r in rows if r["t"] >= run.slope_from]
        if len(window) >= 2:
            rss_slope = slope_per_min([(r["t"], r["rss"]) for r in window])
            rss = [r["rss"] for r in window]
            figures |= {
                "rss_window_start_kb": rss[0],
                "rss_window_slope_kb_per_min": round(rss_slope, 1),
            }
            for key in HEAP_KEYS:
                heap = [(r["t"], r[key]) for r in window if r.get(key) is not None]
                if heap:
                    figures[f"{key}_window_slope_per_min"] = round(slope_per_min(heap), 1)
    leaks = []
    if rss_slope > LEAK_RSS_KB_PER_MIN and rss[-1] - rss[0] > LEAK_RSS_MIN_GROWTH_KB:
        leaks.append("rss")
    for key in ("fds", "threads", "tasks"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if not values:
            continue
        figures |= {
            f"{key}_start": values[0],
            f"{key}_end": values[-1],
            f"{key}_max": max(values),
            f"{key}_slope_per_min": round(
                slope_per_min([(r["t"], r[key]) for r in rows if r.get(key) is not None]), 3
            ),
        }
        if floor_rose(values):
            leaks.append(key)
    log = run.workdir / f"{child.name}.log"
    if log.exists():
        problems = [
            line for line in log.read_text(errors="replace").splitlines() if PROBLEM.search(line)
        ]
        figures["log_problems"] = len(problems)
        figures["log_first_problems"] = sorted(set(problems[:50]))[:3]
    lags = [r["lag_ms"] for r in child.rows if r.get("lag_ms") is not None]
    if lags:
        figures["loop_lag_max_ms"] = max(lags)
    figures["leak"] = leaks
    return figures


def census_growth(run: Run, name: str, top: int = 8) -> list[tuple[str, int, int]]:
    pair = run.censuses.get(name, [])
    if len(pair) < 2:
        return []
    first, last = pair[0], pair[-1]
    growth = [(k, first.get(k, 0), last[k]) for k in last if last[k] - first.get(k, 0) > 0]
    growth.sort(key=lambda g: g[2] - g[1], reverse=True)
    return growth[:top]


def player_figures(run: Run, child: Child) -> dict[str, Any]:
    planned = run.windows
    rows = [child.replies[t] for t in sorted(child.replies)]
    gaps = [e for e in child.events if "from" in e]
    if rows and (rows[-1].get("since_last_ms") or 0) > STALL_MS:  # a stall still open at the end
        end = run.t0_ms + int(rows[-1]["tick"] * run.sample_every * 1000)
        gaps.append({"from": end - rows[-1]["since_last_ms"], "to": end, "missing": 0})
    runs = [e for e in child.events if "run" in e]
    unplanned = [g for g in gaps if not any(w.covers(g["from"], g["to"]) for w in planned)]
    longest = max([g["to"] - g["from"] for g in unplanned], default=0)
    longest = max([longest] + [r.get("max_dt_ms", 0) for r in rows])
    # undecoded frames and audio, per sample interval outside the planned windows
    undecoded = audio_short = tone_missing = 0
    expected = run.sample_every
    for prev, cur in itertools.pairwise(rows):
        begin = run.t0_ms + int(prev["tick"] * run.sample_every * 1000)
        end = run.t0_ms + int(cur["tick"] * run.sample_every * 1000)
        if any(w.covers(begin - 1000, end) for w in planned):
            continue
        undecoded += cur["undecoded"] - prev["undecoded"]
        if cur["audio_s"] - prev["audio_s"] < 0.5 * expected:
            audio_short += 1
        if not cur["tone"]:
            tone_missing += 1
    # re-plays: first decoded frame of a new run after each restart
    replays_ms: list[int] = []
    replay_failures = 0
    restarts = [w for w in planned if w.kind == "restart" and w.requested is not None]
    for w in restarts:
        after = [e["at"] for e in runs if e["at"] >= w.start]
        if after and w.requested is not None:
            replays_ms.append(after[0] - w.requested)
        else:
            replay_failures += 1
    in_restart = [e for e in runs[1:] if any(w.covers(e["at"], e["at"]) for w in restarts)]
    last = rows[-1] if rows else {}
    final = run.finals.get(child.name, {})
    latency_series = [
        (r["tick"] * run.sample_every, r["latency_p50_ms"])
        for r in rows
        if r.get("latency_p50_ms") is not None and r["tick"] * run.sample_every >= run.warmup
    ]
    return {
        "decoded": last.get("decoded", 0),
        "frame_gaps": len(unplanned),
        "missing_unplanned": sum(g["missing"] for g in unplanned),
        "longest_gap_ms": longest,
        "planned_gaps": len(gaps) - len(unplanned),
        "out_of_order": last.get("out_of_order", 0),
        "duplicates": last.get("duplicates", 0),
        "undecoded_unplanned": undecoded,
        "replays": len(in_restart),
        "unplanned_replays": len(runs) - 1 - len(in_restart),
        "replay_failures": replay_failures,
        "replay_max_ms": max(replays_ms, default=None),
        "replay_p50_ms": sorted(replays_ms)[len(replays_ms) // 2] if replays_ms else None,
        "audio_short_intervals": audio_short,
        "tone_missing_samples": tone_missing,
        "latency_p50_ms": final.get("latency_p50_ms"),
        "latency_p99_ms": final.get("latency_p99_ms"),
        "latency_drift_ms_per_min": round(slope_per_min(latency_series), 3),
        "changes": final.get("changes", {}),
        "gap_times": [
            time.strftime("%H:%M:%S", time.localtime(g["from"] / 1000))
            + f" +{g['to'] - g['from']} ms, {g['missing']} missing"
            for g in unplanned[:10]
        ],
    }


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def analyse(run: Run) -> dict[str, Any]:
    procs = {c.name: process_figures(run, c) for c in run.children}
    players = {c.name: player_figures(run, c) for c in run.children if c.name in PLAYERS}
    channel = run.channel
    assert channel is not None
    loads = [m["load"] for m in run.machine]
    first, last = run.machine[0], run.machine[-1]
    busy = 100 * (last["busy"] - first["busy"]) / max(1, last["total"] - first["total"])
    return {
        "procs": procs,
        "players": players,
        "commands": channel.sent,
        "command_failures": len(channel.failures),
        "failure_list": channel.failures[:10],
        "planned_failures": channel.planned_failures,
        "anomalies": channel.anomalies,
        "command_p50_ms": quantile(channel.latencies_ms, 0.5),
        "command_p99_ms": quantile(channel.latencies_ms, 0.99),
        "command_max_ms": max(channel.latencies_ms, default=None),
        "topics": dict(channel.topics),
        "load_mean": round(sum(loads) / len(loads), 2),
        "load_max": max(loads),
        "machine_busy_percent": round(busy, 1),
        "census": {c.name: census_growth(run, c.name) for c in run.children if c.controlled},
        "planned": collections.Counter(w.kind for w in run.windows),
        "crashed": run.crashed,
    }


def print_allocations(run: Run, top: int = 6) -> None:
    """What grew most between the two censuses, by allocating traceback (--tracemalloc)."""
    for child in run.children:
        paths = [run.workdir / f"{child.name}.{n}" for n in (0, 1)]
        if not child.controlled or not all(p.exists() for p in paths):
            continue
        first, last = (tracemalloc.Snapshot.load(str(p)) for p in paths)
        print(f"allocations grown in {child.name}:")
        for stat in last.compare_to(first, "traceback")[:top]:
            frames = " < ".join(
                f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:4]
            )
            print(f"  {stat.size_diff / 1024:+.0f} KB, {stat.count_diff:+} blocks: {frames}")


def round_or_none(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def print_report(run: Run, result: dict[str, Any]) -> dict[str, Any]:
    procs, players = result["procs"], result["players"]
    print(
        f"{'process':<9}{'rss start':>10}{'end':>8}{'max':>8}{'KB/min':>8}{'fds':>9}"
        f"{'threads':>9}{'tasks':>10}{'cpu %':>7}{'lag ms':>8}  leak"
    )
    for name, p in procs.items():
        if not p:
            print(f"{name:<9} (no samples)")
            continue

        def pair(key: str, p: dict[str, Any] = p) -> str:
            if f"{key}_start" not in p:
                return "-"
            return f"{p[f'{key}_start']}>{p[f'{key}_end']}"

        print(
            f"{name:<9}{p['rss_start_kb']:>10}{p['rss_end_kb']:>8}{p['rss_max_kb']:>8}"
            f"{p['rss_slope_kb_per_min']:>8}{pair('fds'):>9}{pair('threads'):>9}"
            f"{pair('tasks'):>10}{p['cpu_percent']:>7}{p.get('loop_lag_max_ms', '-'):>8}  "
            + (", ".join(p["leak"]) or "no")
        )
    for name, p in procs.items():
        if "heap_kb_start" in p:
            window = ""
            if "rss_window_slope_kb_per_min" in p:
                window = (
                    f"; from {run.slope_from:g} s: RSS {p['rss_window_slope_kb_per_min']} KB/min,"
                    f" heap {p.get('heap_kb_window_slope_per_min')},"
                    f" in use {p.get('heap_used_kb_window_slope_per_min')}"
                )
            print(
                f"  {name} C heap KB {p['heap_kb_start']}>{p['heap_kb_end']}"
                f" ({p['heap_kb_slope_per_min']}/min), in use"
                f" {p['heap_used_kb_start']}>{p['heap_used_kb_end']}"
                f" ({p['heap_used_kb_slope_per_min']}/min), own mappings {p.get('mmap_kb_end')}"
                + window
            )
    print()
    print(
        f"{'player':<9}{'decoded':>8}{'gaps':>6}{'missing':>8}{'longest ms':>11}{'planned':>8}"
        f"{'replays':>8}{'replay max ms':>14}{'p50/p99 ms':>12}{'drift ms/min':>13}"
        f"{'audio short':>12}{'no tone':>8}"
    )
    for name, p in players.items():
        latency = f"{p['latency_p50_ms']}/{p['latency_p99_ms']}"
        print(
            f"{name:<9}{p['decoded']:>8}{p['frame_gaps']:>6}{p['missing_unplanned']:>8}"
            f"{p['longest_gap_ms']:>11}{p['planned_gaps']:>8}{p['replays']:>8}"
            f"{p['replay_max_ms'] or '-':>14}"
            f"{latency:>12}"
            f"{p['latency_drift_ms_per_min']:>13}{p['audio_short_intervals']:>12}"
            f"{p['tone_missing_samples']:>8}"
        )
        for line in p["gap_times"]:
            print(f"  gap at {line}")
        if p["changes"]:
            print(f"  events: {p['changes']}")
    print()
    print(
        f"mqtt: {result['commands']} commands, {result['command_failures']} failed, "
        f"p50 {round_or_none(result['command_p50_ms'])} ms, "
        f"p99 {round_or_none(result['command_p99_ms'])} ms, "
        f"max {round_or_none(result['command_max_ms'])} ms; "
        f"messages {result['topics']}"
    )
    for failure in result["failure_list"]:
        print(f"  failed: {failure}")
    for failure in result["planned_failures"][:5]:
        print(f"  failed inside a planned window (not counted): {failure}")
    for anomaly in result["anomalies"][:10]:
        print(f"  get_state outside planned windows: {anomaly}")
    print(f"planned: {dict(result['planned'])}")
    print(
        f"machine: load average mean {result['load_mean']} max {result['load_max']}, "
        f"CPU busy {result['machine_busy_percent']}% of {os.cpu_count()} cores"
    )
    for name, growth in result["census"].items():
        if growth:
            text = ", ".join(f"{k} {a}>{b}" for k, a, b in growth)
            print(f"objects grown in {name} (warm-up end > end): {text}")
    if result["crashed"]:
        print(f"processes that died: {', '.join(result['crashed'])}")
    for name, p in procs.items():
        for line in p.get("log_first_problems", []):
            print(f"{name} log ({p['log_problems']} warning/error lines): {line[:160]}")
    if run.tracemalloc:
        print_allocations(run)
    daemon = procs.get("daemon", {})
    judged = run.duration >= JUDGE_MIN_S
    leak = judged and any(p.get("leak") for p in procs.values())
    gaps = sum(p["frame_gaps"] for p in players.values())
    figures: dict[str, Any] = {
        "duration_s": run.duration,
        "warmup_s": run.warmup,
        "rss_start_kb": daemon.get("rss_start_kb"),
        "rss_end_kb": daemon.get("rss_end_kb"),
        "rss_max_kb": daemon.get("rss_max_kb"),
        "rss_slope_kb_per_min": daemon.get("rss_slope_kb_per_min"),
        "slope_from_s": run.slope_from,
        "rss_window_slope_kb_per_min": daemon.get("rss_window_slope_kb_per_min"),
        "fds_start": daemon.get("fds_start"),
        "fds_end": daemon.get("fds_end"),
        "threads_start": daemon.get("threads_start"),
        "threads_end": daemon.get("threads_end"),
        "tasks_start": daemon.get("tasks_start"),
        "tasks_end": daemon.get("tasks_end"),
        "frame_gaps": gaps,
        "missing_frames": sum(p["missing_unplanned"] for p in players.values()),
        "longest_gap_ms": max((p["longest_gap_ms"] for p in players.values()), default=None),
        "replays": sum(p["replays"] for p in players.values()),
        "replay_failures": sum(p["replay_failures"] for p in players.values()),
        "replay_max_ms": max(
            (p["replay_max_ms"] for p in players.values() if p["replay_max_ms"] is not None),
            default=None,
        ),
        "unplanned_replays": sum(p["unplanned_replays"] for p in players.values()),
        "audio_short_intervals": sum(p["audio_short_intervals"] for p in players.values()),
        "tone_missing_samples": sum(p["tone_missing_samples"] for p in players.values()),
        "commands": result["commands"],
        "command_failures": result["command_failures"],
        "command_failures_planned": len(result["planned_failures"]),
        "command_p50_ms": round_or_none(result["command_p50_ms"]),
        "command_p99_ms": round_or_none(result["command_p99_ms"]),
        "state_anomalies": len(result["anomalies"]),
        "leak": leak,
        "leak_judged": judged,
        "load_mean": result["load_mean"],
        "load_max": result["load_max"],
        "machine_busy_percent": result["machine_busy_percent"],
        "crashed": result["crashed"],
    }
    for name, p in procs.items():
        for key in (
            "rss_start_kb",
            "rss_end_kb",
            "rss_slope_kb_per_min",
            "rss_window_start_kb",
            "rss_window_slope_kb_per_min",
            "heap_kb_start",
            "heap_kb_end",
            "heap_kb_slope_per_min",
            "heap_kb_window_slope_per_min",
            "heap_used_kb_start",
            "heap_used_kb_end",
            "heap_used_kb_slope_per_min",
            "heap_used_kb_window_slope_per_min",
            "mmap_kb_end",
            "fds_start",
            "fds_end",
            "threads_end",
            "tasks_start",
            "tasks_end",
            "cpu_percent",
            "loop_lag_max_ms",
            "log_problems",
        ):
            if key in p:
                figures[f"{name}_{key}"] = p[key]
        figures[f"{name}_leak"] = p.get("leak", [])
    for name, p in players.items():
        for key in (
            "frame_gaps",
            "longest_gap_ms",
            "replay_max_ms",
            "latency_p50_ms",
            "latency_p99_ms",
        ):
            figures[f"{name}_{key}"] = p[key]
    slow = figures["replay_max_ms"] is not None and figures["replay_max_ms"] > REPLAY_LIMIT_MS
    suspects = [f"{n}: {', '.join(p['leak'])}" for n, p in procs.items() if p.get("leak")]
    verdict = ("LEAK" if leak else "no leak") if judged else "too short to judge leaks"
    verdict += f" ({'; '.join(suspects)})" if suspects else ""
    verdict += f"; {gaps} unplanned frame gap(s)"
    verdict += "; re-play slower than 5 s" if slow else ""
    print(f"verdict: {verdict}")
    return figures


# ---- entry ----------------------------------------------------------------------------


def role(args: list[str]) -> None:
    name, rest = args[0], args[1:]
    if name == "daemon":
        sys.exit(daemon_role(rest[0]))
    elif name == "server":
        asyncio.run(server_role(int(rest[0])))
    else:
        asyncio.run(player_role(rest[0], rest[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 60 s, for a smoke check")
    parser.add_argument("--duration", type=float, help="seconds soaked (default 600)")
    parser.add_argument(
        "--restart-every", type=float, help="seconds between stop/start_publishing (180)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations (slow) and show what grew between the two censuses",
    )
    parser.add_argument(
        "--slope-from",
        type=float,
        metavar="S",
        help="judge RSS by its slope over the samples from S seconds on (default: warm-up end)",
    )
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role(args.role)
        return
    duration = args.duration or (60.0 if args.quick else 600.0)
    mosquitto()

    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    import aiortc
    import av

    print(
        f"# namespace {ns.name}; daemon publishes {WIDTH}x{HEIGHT}@{FPS} H.264 "
        f"{BITRATE // 1000} kbit/s + tone to {len(PLAYERS)} players; {duration:g} s soaked; "
        f"cpu {os.cpu_count()}; load {Path('/proc/loadavg').read_text().split()[0]} at start; "
        f"python {platform.python_version()}, aiortc {aiortc.__version__}, PyAV {av.__version__}",
        flush=True,
    )
    figures = asyncio.run(orchestrate(args, duration))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
