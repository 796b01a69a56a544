"""Room server load: thousands of users in hundreds of rooms logging in, publishing,
playing (signaling only) and leaving.

The server runs in its own process (so its CPU and memory are its own); several
generator processes simulate the users. Every room lives in one generator, so the
time from a user's login to the moment the others in its room hear of it (the
notification fan-out) is measured on one clock.

    python bench/room_load.py [--quick] [--users N] [--rooms N] [--rate LOGINS_PER_S]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP, SECRET = "load", "load-secret-0123456789-0123456789-abcdefgh"


def raise_file_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ---- the server process ----------------------------------------------------------------


async def serve(port: int) -> None:
    from aiohttp import web

    from edged.server.app import RoomServer
    from edged.server.settings import Limits, ServerSettings

    limits = Limits(
        max_connections=100_000,
        max_connections_per_ip=100_000,
        ip_messages_per_s=1e6,
        ip_message_burst=1e6,
        ip_connects_per_s=1e6,
        ip_connect_burst=1e6,
    )
    server = RoomServer(
        ServerSettings(
            apps={APP: SECRET}, heartbeat_interval_s=30, heartbeat_timeout_s=90, limits=limits
        )
    )
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# ---- a generator process ---------------------------------------------------------------


class User:
    """One simulated user: a socket, its pending request and what it heard."""

    def __init__(self, name: str, room: str) -> None:
        self.name, self.room = name, room
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 1
        self.heard: dict[str, float] = {}  # user id -> when its ADD arrived

    async def request(self, mtype: str, **fields: Any) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        await self.ws.send_str(json.dumps({"type": mtype, "id": rid, **fields}))
        return await asyncio.wait_for(fut, 30)

    async def read(self) -> None:
        async for frame in self.ws:
            msg = json.loads(frame.data)
            if msg["type"] == "reply" and msg.get("id") in self.replies:
                self.replies.pop(msg["id"]).set_result(msg)
            elif msg["type"] == "room_user_update" and msg["update_type"] == 0:
                now = time.perf_counter()
                for user in msg["users"]:
                    self.heard.setdefault(user["user_id"], now)


async def generate(url: str, rooms: list[str], per_room: int, rate: float) -> dict[str, Any]:
    import aiohttp

    from edged.tokens import mint

    raise_file_limit()
    users = [User(f"{room}-u{i}", room) for room in rooms for i in range(per_room)]
    # Join rooms round-robin so every room fills at the same pace.
    order = [users[r * per_room + i] for i in range(per_room) for r in range(len(rooms))]
    tokens = {u.name: mint(SECRET, APP, u.name, 3600) for u in users}
    sent_at: dict[str, float] = {}
    login_ms: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()

        async def login(user: User, due: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t0 = time.perf_counter()
            try:
                user.ws = await http.ws_connect(url, max_msg_size=0)
                user.reader = asyncio.create_task(user.read())
                sent_at[user.name] = time.perf_counter()
                reply = await user.request(
                    "login",
                    app_id=APP,
                    room_id=user.room,
                    user_id=user.name,
                    token=tokens[user.name],
                    user_update=True,
                )
                if not reply["ok"]:
                    errors += 1
                    return
                login_ms.append((time.perf_counter() - t0) * 1000)
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1

        await asyncio.gather(*(login(u, start + i / rate) for i, u in enumerate(order)))
        login_s = time.perf_counter() - start
        # The first user of each room publishes; the second plays it (signaling only).
        for room_index, room in enumerate(rooms):
            first, second = users[room_index * per_room], users[room_index * per_room + 1]
            if first.ws is not None and second.ws is not None:
                await first.request("publish", stream_id=f"{room}-cam")
                await second.request("play", stream_id=f"{room}-cam")
        await asyncio.sleep(1.0)
        # Only users who joined after u: earlier ones reached u as its initial ADD.
        notify_ms = [
            (heard - sent_at[joiner]) * 1000
            for u in users
            for joiner, heard in u.heard.items()
            if joiner in sent_at and u.name in sent_at and sent_at[joiner] > sent_at[u.name]
        ]
        print("idle", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for u in users:
            if u.ws is not None:
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(u.request("logout"), 10)
                await u.ws.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "users": len(users),
        "logged_in": len(login_ms),
        "errors": errors,
        "login_s": login_s,
        "login_ms": login_ms,
        "notify_ms": notify_ms,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# ---- orchestration ---------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users in 100 rooms")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0, help="target logins per second")
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--room-list", help=argparse.SUPPRESS)
    parser.add_argument("--per-room", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        raise_file_limit()
        asyncio.run(serve(args.port))
        return
    if args.role == "generator":
        rooms = args.room_list.split(",")
        result = asyncio.run(
            generate(f"ws://127.0.0.1:{args.port}/ws", rooms, args.per_room, args.rate)
        )
        print(json.dumps(result), flush=True)
        return

    users, rooms = (1000, 100) if args.quick else (args.users, args.rooms)
    per_room = max(2, users // rooms)
    room_ids = [f"room{r}" for r in range(rooms)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    me = [sys.executable, __file__, "--port", str(port)]
    server = subprocess.Popen(
        [*me, "--role", "server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdin is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the server did not start")
    base_rss, base_cpu = rss_kb(server.pid), cpu_s(server.pid)
    gens = []
    share = args.rate / args.generators
    for g in range(args.generators):
        mine = room_ids[g :: args.generators]
        gens.append(
            subprocess.Popen(
                [
                    *me,
                    "--role",
                    "generator",
                    "--room-list",
                    ",".join(mine),
                    "--per-room",
                    str(per_room),
                    "--rate",
                    str(share),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for gen in gens:
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != "idle":
            raise SystemExit("a generator failed")
    time.sleep(1.0)
    idle_rss, login_cpu = rss_kb(server.pid), cpu_s(server.pid) - base_cpu
    results = []
    for gen in gens:
        out, _ = gen.communicate(input="\n", timeout=300)
        results.append(json.loads(out.strip().splitlines()[-1]))
    server.communicate(input="", timeout=60)

    logged_in = sum(r["logged_in"] for r in results)
    login_ms = [x for r in results for x in r["login_ms"]]
    notify_ms = [x for r in results for x in r["notify_ms"]]
    login_s = max(r["login_s"] for r in results)
    kb_per_user = (idle_rss - base_rss) / max(1, logged_in)
    figures = {
        "users": logged_in,
        "rooms": rooms,
        "errors": sum(r["errors"] for r in results),
        "logins_per_s": round(logged_in / login_s, 1),
        "target_logins_per_s": args.rate,
        "login_p50_ms": round(pct(login_ms, 50), 2),
        "login_p99_ms": round(pct(login_ms, 99), 2),
        "notify_p50_ms": round(pct(notify_ms, 50), 2),
        "notify_p99_ms": round(pct(notify_ms, 99), 2),
        "notifications": len(notify_ms),
        "kb_per_user": round(kb_per_user, 1),
        "server_rss_mb": round(idle_rss / 1024, 1),
        "server_cpu_s_logins": round(login_cpu, 2),
        "generator_cpu_s": [round(r["cpu_s"], 2) for r in results],
    }
    print(
        f"# {logged_in} users in {rooms} rooms, {args.generators} generator processes, "
        f"target {args.rate:g} logins/s, cpu {os.cpu_count()}"
    )
    for key, value in figures.items():
        print(f"{key:<24}{value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
