"""What waking up costs on this machine: the floor under any 30 fps event-loop publisher.

A publisher wakes at least once per frame. This measures the CPU time of a process that
does nothing else, woken 30 times a second, three ways: ``time.sleep``; an epoll
selector with a timeout (what asyncio waits in); and an asyncio loop awaiting
``asyncio.sleep`` (the timer, future and task step around the same wait). The
difference between the last two is asyncio's own per-wake-up work, done with cold
caches after every sleep.

    python bench/wakeup.py [--quick] [--duration S]

Prints a table, then one JSON object as the last line (microseconds of CPU per wake-up,
and the CPU-seconds per second of a 30 Hz asyncio loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import selectors
import socket
import time
from collections.abc import Callable

RATE = 30


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(wait: Callable[[], object], duration: float) -> tuple[float, int]:
    """CPU microseconds per call of ``wait`` (which sleeps 1/RATE s), and the calls."""
    start, cpu, calls = time.monotonic(), cpu_seconds(), 0
    while time.monotonic() - start < duration:
        wait()
        calls += 1
    return (cpu_seconds() - cpu) * 1e6 / calls, calls


def measure_asyncio(duration: float) -> tuple[float, int]:
    async def run() -> tuple[float, int]:
        await asyncio.sleep(0.2)  # the loop is up and warm
        start, cpu, calls = time.monotonic(), cpu_seconds(), 0
        while time.monotonic() - start < duration:
            await asyncio.sleep(1 / RATE)
            calls += 1
        return (cpu_seconds() - cpu) * 1e6 / calls, calls

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per way")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per way")
    args = parser.parse_args()
    duration = 2.0 if args.quick else args.duration

    selector = selectors.EpollSelector()
    quiet, _ = socket.socketpair()
    selector.register(quiet, selectors.EVENT_READ)
    results = {
        "sleep": measure(lambda: time.sleep(1 / RATE), duration),
        "epoll": measure(lambda: selector.select(1 / RATE), duration),
        "asyncio": measure_asyncio(duration),
    }
    print(f"# {RATE} wake-ups/s, {duration:g} s each; python {platform.python_version()}")
    print(f"{'way':<10}{'wake-ups':>10}{'cpu us/wake':>13}{'cpu s/s':>9}")
    for name, (micros, calls) in results.items():
        print(f"{name:<10}{calls:>10}{micros:>13.1f}{micros * RATE / 1e6:>9.4f}")
    figures = {f"{name}_wake_us": round(micros, 1) for name, (micros, _) in results.items()}
    figures["asyncio_30hz_cpu"] = round(results["asyncio"][0] * RATE / 1e6, 4)
    figures["duration_s"] = duration
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
