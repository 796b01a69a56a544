"""The board's CPU publishing to many viewers peer to peer and through Janus, and Janus's own.

One publisher (bench/fanout.py's pass-through publisher: 1280x720@30 H.264 pre-encoded
from FFmpeg's moving testsrc2, looped as a hardware encoder's packets would come) and N
viewers that count reassembled frames without decoding (bench/fanout.py's viewer), all
in one private network namespace, through two room servers hosted here: one peer to
peer, one relaying every viewer through a Janus this script starts (Debian's janus, the
configuration of edged/testing/janus.py). Runs: p2p_1, p2p_8, sfu_16 (and sfu_1).

Measured over the same window in every process: the publishing process's CPU-seconds
per second (getrusage, all its threads), the peer connections it serves and what they
sent on the wire (the board's uplink: SRTP/SRTCP bytes from aiortc's transport stats,
plus UDP and IPv4 headers), Janus's CPU-seconds per second (/proc/PID/stat), and each
frame's latency from the board handing it to its fan-out to a viewer reassembling it
(a send time in an SEI, bench/stamp.py; same machine, same clock). A run where a viewer
got under 95% of the frames sent is invalid and marked so.

Then the late joiners: a stream with a 30 s GOP whose IDR comes only when the fan-out
asks the source (as a camera's encoder), relayed, with one viewer playing; five more
join one after another, and each one's first keyframe is timed from its play request.

    python bench/sfu.py [--quick] [--duration S]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fanout

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

JANUS_SECRET = "bench-janus-secret-0123456789"
RUNS = [("p2p", 1), ("p2p", 8), ("sfu", 1), ("sfu", 16)]
LATE_GOP_S = 30.0
LATE_JOINS = 5
LATE_JOIN_GAP_S = 3.0
"""Between late joiners: more than the board's keyframe-request limiter and Janus's."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessCpu:
    """CPU-seconds of one process over the windows it is told about (/proc/PID/stat)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.started: tuple[float, float] = (0.0, 0.0)
        self.per_second = 0.0

    def _now(self) -> tuple[float, float]:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return time.monotonic(), (int(fields[11]) + int(fields[12])) / self.tick

    def window(self, edge: str) -> None:
        if edge == "start":
            self.started = self._now()
        else:
            (t0, c0), (t1, c1) = self.started, self._now()
            self.per_second = (c1 - c0) / (t1 - t0)


async def serve(port: int, janus_url: str | None) -> Any:
    from edged.server.run import start_server
    from edged.server.settings import ServerSettings, SfuSettings

    sfu = SfuSettings([janus_url], JANUS_SECRET) if janus_url else None
    settings = ServerSettings(apps={fanout.APP: fanout.SECRET}, port=port, sfu=sfu)
    return await start_server(settings)


def late_joins(url: str, joins: int) -> list[float | None]:
    """A stream whose GOP is 30 s, relayed: an early viewer plays it, then ``joins`` late
    viewers, one every few seconds; each one's first keyframe, in ms after it asked to
    play (None: none within 20 s). Only Janus's PLI, passed on as a keyframe request to
    the source, can bring it sooner than the next natural one."""
    room = "late-join"
    children = [fanout.spawn("edged-passthrough", url, room, "moving", str(LATE_GOP_S))]
    firsts: list[float | None] = []
    try:
        fanout.expect_ready(children[0], "publisher")
        children.append(fanout.spawn("viewer", url, room, "early"))
        fanout.expect_ready(children[1], "early viewer")
        for i in range(joins):
            time.sleep(LATE_JOIN_GAP_S)
            late = fanout.spawn("viewer", url, room, f"late{i}")
            children.append(late)
            fanout.expect_ready(late, "late viewer")
            fanout.tell([late], "start")
            fanout.tell([late], "stop")
            assert late.stdout is not None
            firsts.append(json.loads(late.stdout.readline())["first_keyframe_ms"])
    finally:
        fanout.reap(children)
    return firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per measurement")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    args = parser.parse_args()
    duration = 4.0 if args.quick else args.duration

    from edged.testing.janus import Janus
    from edged.testing.netns import enter_test_namespace

    ns = enter_test_namespace()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    workdir = Path(f"/tmp/edged-bench-sfu-{os.getpid()}")
    janus = Janus(workdir, api_secret=JANUS_SECRET)
    on_loop(janus.start())
    assert janus.proc is not None
    janus_cpu = ProcessCpu(janus.proc.pid)
    ports = {"p2p": free_port(), "sfu": free_port()}
    runners = {
        "p2p": on_loop(serve(ports["p2p"], None)),
        "sfu": on_loop(serve(ports["sfu"], janus.url)),
    }
    print(
        f"# namespace {ns.name}; {fanout.WIDTH}x{fanout.HEIGHT}@{fanout.FPS} H.264 pass-through,"
        f" moving content; {duration:g} s measured after {fanout.WARMUP_S:g} s warm-up;"
        f" cpu {os.cpu_count()}; janus {janus.exe}"
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        for mode, viewers in RUNS:
            url = f"ws://127.0.0.1:{ports[mode]}/ws"
            result = fanout.run("passthrough", viewers, url, duration, "moving", janus_cpu.window)
            result["janus_cpu"] = janus_cpu.per_second if mode == "sfu" else 0.0
            result["device_links"] = 1 if mode == "sfu" else viewers
            results[f"{mode}_{viewers}"] = result
        late = late_joins(f"ws://127.0.0.1:{ports['sfu']}/ws", 1 if args.quick else LATE_JOINS)
    finally:
        for runner in runners.values():
            on_loop(runner.cleanup())
        on_loop(janus.stop())
    report(results, late, duration)


def report(results: dict[str, dict[str, Any]], late: list[float | None], duration: float) -> None:
    print(
        f"{'run':<8}{'viewers':>8}{'board cpu s/s':>15}{'board links':>13}{'board up kbit/s':>17}"
        f"{'janus cpu s/s':>15}{'latency p50 ms':>16}{'min delivered':>15}  valid"
    )
    for key, r in results.items():
        mode, n = key.rsplit("_", 1)
        print(
            f"{mode:<8}{n:>8}{r['cpu']:>15.3f}{r['device_links']:>13}{r['up_kbps']:>17.0f}"
            f"{r['janus_cpu']:>15.3f}{r['latency_p50_ms'] or float('nan'):>16.1f}"
            f"{min(r['delivered']):>15.3f}  " + ("yes" if r["valid"] else "NO")
        )
    shown = ", ".join("none" if ms is None else f"{ms:.0f}" for ms in late)
    print(f"late joiners through Janus, {LATE_GOP_S:g} s GOP: first keyframe after {shown} ms")
    cpu = {key: r["cpu"] for key, r in results.items()}
    figures: dict[str, Any] = {f"device_cpu_{key}": round(c, 4) for key, c in cpu.items()}
    figures["device_up_kbps_p2p_8"] = round(results["p2p_8"]["up_kbps"], 1)
    figures["device_up_kbps_sfu_16"] = round(results["sfu_16"]["up_kbps"], 1)
    figures["janus_cpu_16"] = round(results["sfu_16"]["janus_cpu"], 4)
    figures["p2p_latency_p50_ms"] = results["p2p_8"]["latency_p50_ms"]
    figures["sfu_latency_p50_ms"] = results["sfu_16"]["latency_p50_ms"]
    joined = [ms for ms in late if ms is not None]
    every = len(joined) == len(late)
    figures["late_join_first_frame_ms"] = round(max(joined), 1) if every else None
    figures["late_join_first_frame_ms_all"] = [None if ms is None else round(ms) for ms in late]
    stream_kbps = results["p2p_1"]["up_kbps"]
    p2p_per_viewer = (cpu["p2p_8"] - cpu["p2p_1"]) / 7
    janus_per_viewer = results["sfu_16"]["janus_cpu"] / 16
    figures |= {
        "p2p_cpu_per_added_viewer": round(p2p_per_viewer, 5),
        "janus_cpu_per_viewer": round(janus_per_viewer, 5),
        "sfu_16_over_p2p_1": round(cpu["sfu_16"] / cpu["p2p_1"], 3),
        "goal_sfu_16_met": cpu["sfu_16"] <= 1.3 * cpu["p2p_1"],
        "goal_uplink_met": figures["device_up_kbps_sfu_16"] <= 1.2 * stream_kbps,
        "goal_latency_met": (figures["sfu_latency_p50_ms"] or 1e9)
        <= (figures["p2p_latency_p50_ms"] or 0) + 10,
        "goal_late_join_met": (figures["late_join_first_frame_ms"] or 1e9) <= 1000,
        "valid": all(r["valid"] for r in results.values()),
        "duration_s": duration,
    }
    print(
        f"board: sfu_16 / p2p_1 = {figures['sfu_16_over_p2p_1']:.2f} (goal <= 1.3); per viewer:"
        f" edged's fan-out {1000 * p2p_per_viewer:.1f} mCPU-s/s, Janus"
        f" {1000 * janus_per_viewer:.1f} mCPU-s/s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
