"""A board's budget, simulated: `edged run` at a board's defaults under a CPU quota.

No board here, so each profile is simulated: the daemon runs as a process of its own in
a cgroup (v1 ``cpu`` controller, ``cpu.cfs_quota_us``) whose quota is the board's four
cores scaled by a published single-core benchmark ratio against this machine's core
(sysbench 1.0.20 ``cpu``, one thread, primes to 10000; this machine's figure measured
at start, the boards' from leoncode.co.uk, see BOARD_EVENTS), capped at this machine's
cores. It publishes at the board's defaults (edged.media.board.BOARDS): pass-through
from the picamera2 stand-in (tests/fake_picamera2) where the board has the hardware
encoder, the stand-in's raw frames through libx264 where it has not (the Pi 5); its
ALSA microphone (the tests' FIFO PCM fed with a tone) goes through the intercom with
echo cancellation, and it plays one stream (a tone another engine publishes) on the
tests' file speaker PCM (``speaker_s``: the seconds it played). The board's default
peer-to-peer viewers (bench/fanout.py's viewer processes, outside the cgroup) receive
the video and count frames without decoding.

The stand-in's own work (rendering the sensor's picture, and where the board has one,
the "hardware" encoder, which is libx264 here) would cost nothing on a board: it is
measured alone first (a process running the same camera track, no quota) and added to
the quota, and taken off the daemon's CPU, so that the board's budget is edged's alone.

    python bench/board.py [--quick] [--duration S] [--only zero2w,pi5]

Keys of the last line, per board: delivered_<board> (the frames the worst-served viewer
got over the frames sent: those the best-served viewer got when its RTP sequence
numbers had no gap, else the camera's nominal rate over the window), cpu_headroom_<board>
(1 - edged's CPU-s/s over the board's budget in cores of this machine). camera_fps is
the rate the best-served viewer got: the stand-in camera's rate inside the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' PCMs

from fanout import (  # noqa: E402
    APP,
    SECRET,
    collect,
    expect_ready,
    reap,
    room_server_thread,
    tell,
)

STAND_IN = ROOT / "tests" / "fake_picamera2"
CGROUP = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
CORES = 4
"""Every profile's board has four cores."""
BOARD_EVENTS = {
    # sysbench 1.0.20 cpu, one thread, events/s (leoncode.co.uk/articles/raspberry-pi-benchmarks:
    # Pi 3+ 687.45, Pi 4 1477.83, Pi 5 2737.49). The Zero 2 W is the Pi 3+'s Cortex-A53 at
    # 1.0 GHz instead of 1.4, and the Pi 3's at 1.2 GHz: scaled by clock, not measured.
    "zero2w": 687.45 * 1.0 / 1.4,
    "pi3": 687.45 * 1.2 / 1.4,
    "pi4": 1477.83,
    "pi5": 2737.49,
}
HOST_EVENTS_FALLBACK = 1775.0
"""This machine's figure when sysbench is missing (two runs here: 1690.58, 1860.29)."""
WARMUP_S = 6.0
ROOM = "board"


def host_events() -> tuple[float, str]:
    """This machine's single-core sysbench figure (median of three 5 s runs)."""
    if shutil.which("sysbench") is None:
        return HOST_EVENTS_FALLBACK, "recorded (sysbench not installed)"
    runs = []
    for _ in range(3):
        out = subprocess.run(
            ["sysbench", "cpu", "--threads=1", "--time=5", "run"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append(float(out.split("events per second:")[1].split()[0]))
    return statistics.median(runs), "measured"


def process_cpu(pid: int) -> float:
    """CPU-seconds of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def standin_env(hardware: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{STAND_IN}:{ROOT}"}
    if not hardware:
        env["EDGED_STANDIN_BOARD"] = "pi5"
    return env


# ---- the stand-in's own cost ------------------------------------------------------------


async def standin_role(width: int, height: int, fps: float, bitrate: int, seconds: float) -> None:
    from edged.engine.config import VideoConfig
    from edged.media.sources.picamera2.source import picamera2_video_source

    track = picamera2_video_source(VideoConfig(width, height, fps, bitrate))
    started = time.monotonic()
    while time.monotonic() - started < 2:
        await track.recv()
    cpu, begin = process_cpu(os.getpid()), time.monotonic()
    while time.monotonic() - begin < seconds:
        await track.recv()
    print(json.dumps({"cpu": (process_cpu(os.getpid()) - cpu) / (time.monotonic() - begin)}))
    track.stop()


def standin_cost(picture: Any, hardware: bool, seconds: float) -> float:
    """CPU-s/s of the stand-in camera alone at ``picture`` (no quota)."""
    args = [str(v) for v in (picture.width, picture.height, picture.fps, picture.bitrate)]
    out = subprocess.run(
        [sys.executable, __file__, "--role", "standin", *args, str(seconds)],
        env=standin_env(hardware),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["cpu"])


# ---- one board ------------------------------------------------------------------------


class Cgroup:
    """A cgroup v1 ``cpu`` group with a quota, for one daemon."""

    def __init__(self, name: str, cores: float) -> None:
        self.path = CGROUP / name
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled(self) -> int:
        for line in (self.path / "cpu.stat").read_text().splitlines():
            if line.startswith("nr_throttled"):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def daemon_config(path: Path, url: str, picture: Any, source: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "board-sim"},
                "room": {
                    "server_url": url,
                    "app_id": APP,
                    "app_secret": SECRET,
                    "room_id": ROOM,
                    "user_id": "board",
                },
                "auto": {"publish": {"stream_id": "cam"}, "play": ["far"]},
                "video": {
                    "source": source,
                    "width": picture.width,
                    "height": picture.height,
                    "fps": picture.fps,
                    "bitrate": picture.bitrate,
                },
                "audio": {
                    "source": "alsa",
                    "capture_device": "edged_test_mic",
                    "playback_device": "edged_test_speaker",
                    "echo_cancellation": "cancel",
                },
                "mqtt": {"enabled": False},
                "server": {"enabled": False},
                "logging": {"journald": False, "level": "WARNING"},
            }
        )
    )


async def far_end(url: str) -> Any:
    """Another user publishing a tone: the stream the board plays on its speaker."""
    from edged.engine.config import EngineProfile, PublishConfig
    from edged.engine.engine import Engine
    from edged.engine.events import EventRecorder
    from edged.model import User

    engine = Engine(EngineProfile(app_id=APP, server_url=url, app_secret=SECRET), EventRecorder())
    await engine.login_room(ROOM, User("far"))
    await engine.start_publishing("far", PublishConfig(video=False))
    return engine


def run_board(
    key: str, url: str, loop: asyncio.AbstractEventLoop, host: float, duration: float
) -> dict[str, Any]:
    from alsa import pcms as alsa_pcms
    from alsa.pcms import FifoTone

    from edged.media.board import BOARDS

    profile = next(p for p in BOARDS if p.key == key)
    hardware = profile.hardware is not None
    picture = profile.hardware or profile.software
    viewers = profile.p2p_max_viewers if hardware else profile.p2p_max_viewers_software
    budget = min(CORES * BOARD_EVENTS[key] / host, os.cpu_count() or 1)
    standin = standin_cost(picture, hardware, min(duration, 8.0))
    quota = budget + standin
    far = asyncio.run_coroutine_threadsafe(far_end(url), loop).result(30)
    children: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pcms = alsa_pcms.install(Path(tmp))
        feeder = FifoTone(pcms.mic_fifo, 1000.0)
        config = Path(tmp) / "edged.yaml"
        daemon_config(config, url, picture, "picamera2")
        env = {**standin_env(hardware), "ALSA_CONFIG_PATH": alsa_pcms.config_path(pcms)}
        group = Cgroup(f"edged_board_{key}", quota)
        log = open(Path(tmp) / "daemon.log", "w")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(config)],
            env=env,
            stderr=log,
            text=True,
        )
        try:
            group.add(daemon.pid)
            published = time.monotonic() + 60
            while "cam" not in far.streams:  # the viewers ask for it at once
                if time.monotonic() > published or daemon.poll() is not None:
                    log.flush()
                    tail = Path(log.name).read_text()[-2000:]
                    raise SystemExit(f"{key}: the daemon did not publish:\n{tail}")
                time.sleep(0.2)
            fanout = str(ROOT / "bench" / "fanout.py")
            for i in range(viewers):
                child = subprocess.Popen(
                    [sys.executable, fanout, "--role", "viewer", url, ROOM, f"v{i}"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                children.append(child)
            for child in children:
                expect_ready(child, "viewer")
            time.sleep(WARMUP_S)
            throttled, cpu, started = group.throttled(), process_cpu(daemon.pid), time.monotonic()
            tell(children, "start")
            time.sleep(duration)
            tell(children, "stop")
            seconds = time.monotonic() - started
            used = (process_cpu(daemon.pid) - cpu) / seconds
            throttled = group.throttled() - throttled
            seen = collect(children)
            played = len(pcms.speaker_samples(2)) / 48_000
        finally:
            reap(children)
            daemon.terminate()
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
            log.close()
            feeder.close()
            group.remove()
            asyncio.run_coroutine_threadsafe(far.destroy(), loop).result(30)
    frames = [v["frames"] for v in seen]
    best = max(seen, key=lambda v: v["frames"])
    # Frames sent: those the best-served viewer got when it lost no RTP packet, else the
    # camera's nominal rate over the window.
    sent = best["frames"] if best["packets_lost"] == 0 else picture.fps * seconds
    edged_cpu = max(0.0, used - standin)
    return {
        "picture": str(picture),
        "encoder": "hardware (stand-in)" if hardware else "libx264",
        "viewers": viewers,
        "budget_cores": round(budget, 2),
        "standin_cores": round(standin, 2),
        "quota_cores": round(quota, 2),
        "edged_cpu": round(edged_cpu, 3),
        "throttled_periods": throttled,
        "speaker_s": round(played, 1),
        "camera_fps": round(best["frames"] / seconds, 1),
        "packets_lost": sum(v["packets_lost"] for v in seen),
        "delivered": round(min(frames) / max(sent, 1), 3),
        "cpu_headroom": round(1 - edged_cpu / budget, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per board")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured")
    parser.add_argument("--only", help="comma-separated boards (zero2w,pi3,pi4,pi5)")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        w, h, fps, bitrate, seconds = args.role[1:]
        asyncio.run(standin_role(int(w), int(h), float(fps), int(bitrate), float(seconds)))
        return
    if not (CGROUP / "cpu.cfs_quota_us").exists():
        raise SystemExit(f"bench/board.py needs the cgroup v1 cpu controller at {CGROUP}")
    duration = 5.0 if args.quick else args.duration
    host, how = host_events()

    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    url, loop, stop_server = room_server_thread()
    print(
        f"# namespace {ns.name}; {os.cpu_count()} cores, Python {platform.python_version()};"
        f" this machine's core: {host:.0f} sysbench events/s ({how}); {duration:g} s"
        f" measured after {WARMUP_S:g} s; a simulation, not a board"
    )
    boards = args.only.split(",") if args.only else list(BOARD_EVENTS)
    results = {key: run_board(key, url, loop, host, duration) for key in boards}
    stop_server()
    columns = (
        "picture",
        "encoder",
        "viewers",
        "budget_cores",
        "standin_cores",
        "edged_cpu",
        "throttled_periods",
        "speaker_s",
        "camera_fps",
        "packets_lost",
        "delivered",
        "cpu_headroom",
    )
    print("board   " + "  ".join(columns))
    for key, r in results.items():
        print(f"{key:<7} " + "  ".join(str(r[c]) for c in columns))
    summary: dict[str, Any] = {}
    for key, r in results.items():
        summary[f"delivered_{key}"] = r["delivered"]
        summary[f"cpu_headroom_{key}"] = r["cpu_headroom"]
    print(json.dumps({**summary, "host_events_per_s": round(host, 1), "boards": results}))


if __name__ == "__main__":
    main()
