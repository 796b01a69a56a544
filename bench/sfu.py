"""The board's CPU publishing to many viewers peer to peer and through Janus, and Janus's own.

One publisher (bench/fanout.py's pass-through publisher: 1280x720@30 H.264 pre-encoded
from FFmpeg's moving testsrc2, looped as a hardware encoder's packets would come) and N
viewers that count reassembled frames without decoding (bench/fanout.py's viewer), all
in one private network namespace, through two room servers hosted here: one peer to
peer, one relaying every viewer through a Janus this script starts (Debian's janus, the
configuration of edged/testing/janus.py). Runs: p2p_1, p2p_8, sfu_16 (and sfu_1).

Measured over the same window in every process: the publishing process's CPU-seconds
per second (getrusage, all its threads), the peer connections it serves, and Janus's
CPU-seconds per second (/proc/PID/stat). A run where a viewer got under 95% of the
frames sent is invalid and marked so.

Not measured yet (see docs/benchmarks.md): the board's uplink in kbit/s, latency through
Janus against peer to peer, a late joiner's first frame.

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
    finally:
        for runner in runners.values():
            on_loop(runner.cleanup())
        on_loop(janus.stop())
    report(results, duration)


def report(results: dict[str, dict[str, Any]], duration: float) -> None:
    print(
        f"{'run':<8}{'viewers':>8}{'board cpu s/s':>15}{'board links':>13}{'janus cpu s/s':>15}"
        f"{'min delivered':>15}  valid"
    )
    for key, r in results.items():
        mode, n = key.rsplit("_", 1)
        print(
            f"{mode:<8}{n:>8}{r['cpu']:>15.3f}{r['device_links']:>13}{r['janus_cpu']:>15.3f}"
            f"{min(r['delivered']):>15.3f}  " + ("yes" if r["valid"] else "NO")
        )
    cpu = {key: r["cpu"] for key, r in results.items()}
    figures: dict[str, Any] = {f"device_cpu_{key}": round(c, 4) for key, c in cpu.items()}
    figures["janus_cpu_16"] = round(results["sfu_16"]["janus_cpu"], 4)
    p2p_per_viewer = (cpu["p2p_8"] - cpu["p2p_1"]) / 7
    janus_per_viewer = results["sfu_16"]["janus_cpu"] / 16
    figures |= {
        "p2p_cpu_per_added_viewer": round(p2p_per_viewer, 5),
        "janus_cpu_per_viewer": round(janus_per_viewer, 5),
        "sfu_16_over_p2p_1": round(cpu["sfu_16"] / cpu["p2p_1"], 3),
        "goal_sfu_16_met": cpu["sfu_16"] <= 1.3 * cpu["p2p_1"],
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
