"""Room server load: thousands of users in hundreds of rooms logging in, publishing,
playing (signaling only) and leaving.

The server runs in its own process (so its CPU and memory are its own); several
generator processes simulate the users. Every room lives in one generator, so the
time from a user's login to the moment the others in its room hear of it (the
notification fan-out) is measured on one clock.

    python bench/room_load.py [--quick] [--users N] [--rooms N] [--rate LOGINS_PER_S]
                              [--no-pin] [--server-cpu N]

On a machine with at least two CPUs the server process is pinned to one CPU
(``--server-cpu``, 0 by default) and the generators to all the others, so that the
server has a core of its own; ``--no-pin`` lets the kernel place them. Every
process raises its open-file limit (as root, above the hard limit when needed).

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APP, SECRET = "load", "load-secret-0123456789-0123456789-abcdefgh"
CLUSTER_SECRET = "load-cluster-secret"


WANTED_FILES = 65_536


def raise_file_limit() -> int:
    """Raise the open-file limit (past the hard limit when allowed); return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(hard, WANTED_FILES) if hard != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pinning(server_cpu: int | None) -> tuple[set[int], set[int]] | None:
    """CPUs for (the server, the generators), or None to leave placement to the kernel."""
    if server_cpu is None:
        return None
    cpus = os.sched_getaffinity(0)
    if server_cpu not in cpus or len(cpus) < 2:
        return None
    return {server_cpu}, cpus - {server_cpu}


def pinned_to(cpus: set[int] | None) -> Any:
    """A ``preexec_fn`` that runs the child on ``cpus`` (like ``taskset -c``)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# ---- the server process ----------------------------------------------------------------


async def serve(port: int, profile: str | None, store: str | None, node: int) -> None:
    from aiohttp import web

    from edged.server.app import RoomServer
    from edged.server.cluster import ClusterSettings
    from edged.server.settings import Limits, ServerSettings

    with contextlib.suppress(ImportError):  # a checkout from before it existed
        from edged.server.run import tune_gc

        tune_gc()  # as `edged server` does
    limits = Limits(
        max_connections=100_000,
        max_connections_per_ip=100_000,
        ip_messages_per_s=1e6,
        ip_message_burst=1e6,
        ip_connects_per_s=1e6,
        ip_connect_burst=1e6,
    )
    settings = ServerSettings(
        apps={APP: SECRET}, heartbeat_interval_s=30, heartbeat_timeout_s=90, limits=limits
    )
    if store is not None:
        url = f"http://127.0.0.1:{port}"
        settings.cluster = ClusterSettings(store, f"node{node}", url, CLUSTER_SECRET)
    server = RoomServer(settings)
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    # Time spent in the cyclic garbage collector, per generation, until SIGUSR1.
    gc_runs, gc_s, gc_start = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_runs[info["generation"]] += 1
            gc_s[info["generation"]] += time.perf_counter() - gc_start[0]

    gc.callbacks.append(on_gc)
    profiler: Any = None
    if profile is not None:
        # Profile the login phase: from now until SIGUSR1 (sent when everyone is idle).
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    def login_phase_over() -> None:
        gc.callbacks.remove(on_gc)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{node}" if store else profile)
        print(json.dumps({"gc_runs": gc_runs, "gc_s": gc_s}), flush=True)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, login_phase_over)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# ---- a generator process ---------------------------------------------------------------


class WsClient(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455, text frames) for the load generator.

    aiohttp's client costs the generators more CPU per login than the server spends,
    which would make them the bottleneck on their one core. This one does only what
    the benchmark needs: the upgrade request, unfragmented text frames each way, and
    close. Client frames carry the all-zero masking key: legal, and the server still
    unmasks them as usual (the key is there against proxy cache poisoning, which a
    loopback benchmark does not have).
    """

    def __init__(self, host: str, on_text: Any) -> None:
        self.host = host
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(buf[: buf.find(b"\r\n")].decode()))
                return
            self.upgraded.set_result(None)
            buf = buf[end + 4 :]
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, length = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + length:
                break
            payload = buf[pos + head : pos + head + length]
            pos += head + length
            if opcode == 0x1:
                self.on_text(payload)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()
        self._buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\x88\x82\0\0\0\0\x03\xe8")  # close 1000, masked
            self.transport.close()


class User:
    """One simulated user: a socket, its pending requests and what it heard."""

    def __init__(self, name: str, room: str) -> None:
        self.name, self.room = name, room
        self.ws: WsClient | None = None
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 1
        self.heard: dict[str, float] = {}  # user id -> when its ADD arrived

    async def connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, ws = await loop.create_connection(lambda: WsClient(host, self.received), host, port)
        await ws.upgraded
        self.ws = ws

    async def request(self, mtype: str, **fields: Any) -> dict[str, Any]:
        assert self.ws is not None
        rid = self.next_id
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        self.ws.send_text(json.dumps({"type": mtype, "id": rid, **fields}))
        return await asyncio.wait_for(fut, 30)

    def received(self, data: bytes) -> None:
        msg = json.loads(data)
        if msg["type"] == "reply" and msg.get("id") in self.replies:
            self.replies.pop(msg["id"]).set_result(msg)
        elif msg["type"] == "room_user_update" and msg["update_type"] == 0:
            now = time.perf_counter()
            for user in msg["users"]:
                self.heard.setdefault(user["user_id"], now)


async def generate(
    host: str, ports: list[int], rooms: list[str], per_room: int, rate: float, balance: str
) -> dict[str, Any]:
    from edged.tokens import mint

    raise_file_limit()
    users = [User(f"{room}-u{i}", room) for room in rooms for i in range(per_room)]
    # Join rooms round-robin so every room fills at the same pace.
    order = [users[r * per_room + i] for i in range(per_room) for r in range(len(rooms))]
    # With several nodes, as a balancer with no stickiness spreads them ("spread"): the
    # rooms' first members over the nodes in turn, and each room's next members over the
    # nodes in turn from there (so a room's members are spread over every node). "room": as
    # a balancer that hashes the room's id (docs/scaling.md), every member of a room on one
    # node.
    spread = balance == "spread"
    node_of = {
        u.name: (i // per_room + (i % per_room if spread else 0)) % len(ports)
        for i, u in enumerate(users)
    }
    tokens = {u.name: mint(SECRET, APP, u.name, 3600) for u in users}
    setup_cpu = time.process_time()  # minting is not part of the load
    sent_at: dict[str, float] = {}
    login_ms: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def login(user: User, due: float) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        try:
            await user.connect(host, ports[node_of[user.name]])
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
        except (OSError, TimeoutError):
            errors += 1

    await asyncio.gather(*(login(u, start + i / rate) for i, u in enumerate(order)))
    login_s = time.perf_counter() - start
    login_cpu = time.process_time() - setup_cpu
    # The first user of each room publishes; the second plays it (signaling only).
    for room_index, room in enumerate(rooms):
        first, second = users[room_index * per_room], users[room_index * per_room + 1]
        if first.ws is not None and second.ws is not None:
            await first.request("publish", stream_id=f"{room}-cam")
            await second.request("play", stream_id=f"{room}-cam")
    await asyncio.sleep(1.0)
    # Only users who joined after u: earlier ones reached u as its initial ADD.
    notified = [
        ((heard - sent_at[joiner]) * 1000, node_of[joiner] != node_of[u.name])
        for u in users
        for joiner, heard in u.heard.items()
        if joiner in sent_at and u.name in sent_at and sent_at[joiner] > sent_at[u.name]
    ]
    notify_ms = [ms for ms, _ in notified]
    cross_ms = [ms for ms, across in notified if across]
    print("idle", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def leave(u: User) -> None:
        if u.ws is not None:
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(u.request("logout"), 10)
            u.ws.close()

    for i in range(0, len(users), 500):
        await asyncio.gather(*(leave(u) for u in users[i : i + 500]))
    return {
        "users": len(users),
        "logged_in": len(login_ms),
        "errors": errors,
        "login_s": login_s,
        "login_ms": login_ms,
        "notify_ms": notify_ms,
        "cross_ms": cross_ms,
        "cpu_s": login_cpu,
    }


# ---- orchestration ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A redis-server of the benchmark's own (no persistence) and what it holds."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*argv, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def used_memory(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(b"INFO memory\r\n")
            data = b""
            while b"used_memory:" not in data or not data.endswith(b"\r\n"):
                data += conn.recv(65536)
        line = next(x for x in data.decode().split("\r\n") if x.startswith("used_memory:"))
        return int(line.split(":")[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run(args: argparse.Namespace, store: str, nodes: int) -> dict[str, Any]:
    """One load run: ``nodes`` server processes (sharing a Redis with ``store`` redis),
    the generators, and the figures."""
    users, rooms = (1000, 100) if args.quick else (args.users, args.rooms)
    load_before = float(Path("/proc/loadavg").read_text().split()[0])
    per_room = max(2, users // rooms)
    room_ids = [f"room{r}" for r in range(rooms)]
    ports = [free_port() for _ in range(nodes)]
    files = raise_file_limit()  # the children inherit it
    pins = pinning(None if args.no_pin or nodes > 1 else args.server_cpu)
    redis = Redis() if store == "redis" else None
    me = [sys.executable, __file__]
    extra = ["--server-profile", args.server_profile] if args.server_profile else []
    if redis is not None:
        extra += ["--store-url", redis.url]
    servers = []
    for node, port in enumerate(ports):
        servers.append(
            subprocess.Popen(
                [*me, *extra, "--port", str(port), "--node", str(node), "--role", "server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=pinned_to(pins[0] if pins else None),
            )
        )
    for server in servers:
        assert server.stdout is not None and server.stdin is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("a server did not start")
    redis_before = redis.used_memory() if redis is not None else 0
    base_rss = [rss_kb(server.pid) for server in servers]
    base_cpu = [cpu_s(server.pid) for server in servers]
    gens = []
    share = args.rate / args.generators
    for g in range(args.generators):
        mine = room_ids[g :: args.generators]
        gens.append(
            subprocess.Popen(
                [
                    *me,
                    "--ports",
                    ",".join(map(str, ports)),
                    "--role",
                    "generator",
                    "--room-list",
                    ",".join(mine),
                    "--per-room",
                    str(per_room),
                    "--rate",
                    str(share),
                    "--balance",
                    args.balance,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=pinned_to(pins[1] if pins else None),
            )
        )
    for gen in gens:
        assert gen.stdout is not None
        if gen.stdout.readline().strip() != "idle":
            raise SystemExit("a generator failed")
    time.sleep(1.0)
    idle_rss = [rss_kb(server.pid) for server in servers]
    login_cpu = login_sys = 0.0
    for server, before in zip(servers, base_cpu, strict=True):
        user_s, sys_s = cpu_s(server.pid)
        login_cpu += user_s + sys_s - sum(before)
        login_sys += sys_s - before[1]
    redis_idle = redis.used_memory() if redis is not None else 0
    gc_stats: dict[str, list[float]] = {"gc_runs": [0, 0, 0], "gc_s": [0.0, 0.0, 0.0]}
    for server in servers:
        assert server.stdout is not None
        server.send_signal(signal.SIGUSR1)
        one = json.loads(server.stdout.readline())
        for key in ("gc_runs", "gc_s"):
            gc_stats[key] = [a + b for a, b in zip(gc_stats[key], one[key], strict=True)]
    load_after = float(Path("/proc/loadavg").read_text().split()[0])
    results = []
    for gen in gens:
        out, _ = gen.communicate(input="\n", timeout=300)
        results.append(json.loads(out.strip().splitlines()[-1]))
    for server in servers:
        server.communicate(input="", timeout=60)
    if redis is not None:
        redis.stop()

    logged_in = sum(r["logged_in"] for r in results)
    login_ms = [x for r in results for x in r["login_ms"]]
    notify_ms = [x for r in results for x in r["notify_ms"]]
    cross_ms = [x for r in results for x in r["cross_ms"]]
    login_s = max(r["login_s"] for r in results)
    kb_per_user = (sum(idle_rss) - sum(base_rss)) / max(1, logged_in)
    figures: dict[str, Any] = {
        "store": store,
        "nodes": nodes,
        "balance": args.balance if nodes > 1 else "one node",
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
        "cross_node_notify_p99_ms": round(pct(cross_ms, 99), 2) if cross_ms else None,
        "cross_node_notifications": len(cross_ms),
        "kb_per_user": round(kb_per_user, 1),
        "server_rss_mb": round(sum(idle_rss) / 1024, 1),
        "server_cpu_s_logins": round(login_cpu, 2),
        "server_cpu_ms_per_login": round(login_cpu * 1000 / max(1, logged_in), 3),
        "server_sys_s_logins": round(login_sys, 2),
        "redis_bytes_per_user": (
            round((redis_idle - redis_before) / max(1, logged_in)) if redis else None
        ),
        "server_gc_s_logins": round(sum(gc_stats["gc_s"]), 2),
        "server_gc_s_by_generation": [round(x, 3) for x in gc_stats["gc_s"]],
        "server_gc_runs": gc_stats["gc_runs"],
        "generator_cpu_s": [round(r["cpu_s"], 2) for r in results],
        "server_cpus": cpu_list(pins[0]) if pins else "any",
        "generator_cpus": cpu_list(pins[1]) if pins else "any",
        "loadavg_before": load_before,
        "loadavg_idle": load_after,
    }
    placement = (
        f"server pinned to CPU {cpu_list(pins[0])}, generators to CPU {cpu_list(pins[1])}"
        if pins
        else "not pinned (the kernel places every process)"
    )
    where = f"{nodes} node(s) sharing Redis" if redis is not None else "one in-memory server"
    print(
        f"# {where}: {logged_in} users in {rooms} rooms, {args.generators} generator "
        f"processes, target {args.rate:g} logins/s, {os.cpu_count()} CPUs, {placement}, "
        f"open-file limit {files}, load average {load_before} before, {load_after} at idle"
    )
    for key, value in figures.items():
        print(f"{key:<26}{value}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users in 100 rooms")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0, help="target logins per second")
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument(
        "--store",
        choices=("memory", "redis"),
        default="memory",
        help="redis: --nodes server processes sharing a Redis of the benchmark's own, after"
        " an in-memory run of the same load to compare with (default: memory)",
    )
    parser.add_argument("--nodes", type=int, default=2, help="with --store redis (default 2)")
    parser.add_argument(
        "--balance",
        choices=("spread", "room"),
        default="spread",
        help="with several nodes, how the clients reach them: spread, each room's members"
        " over every node, as a balancer with no stickiness does; room, every member of a room"
        " on one node, as a balancer that hashes the room's id (default: spread)",
    )
    parser.add_argument(
        "--server-cpu", type=int, default=0, help="the CPU the server is pinned to (default 0)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the server and generators to CPUs"
    )
    parser.add_argument(
        "--server-profile",
        metavar="FILE",
        help="write a cProfile of the server's login phase to FILE (pstats format)",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--node", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", help=argparse.SUPPRESS)
    parser.add_argument("--room-list", help=argparse.SUPPRESS)
    parser.add_argument("--per-room", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        raise_file_limit()
        asyncio.run(serve(args.port, args.server_profile, args.store_url, args.node))
        return
    if args.role == "generator":
        rooms = args.room_list.split(",")
        ports = [int(p) for p in args.ports.split(",")]
        result = asyncio.run(
            generate("127.0.0.1", ports, rooms, args.per_room, args.rate, args.balance)
        )
        print(json.dumps(result), flush=True)
        return
    if args.store == "memory":
        print(json.dumps(run(args, "memory", 1)))
        return
    memory = run(args, "memory", 1)
    redis = run(args, "redis", args.nodes)
    ratio = redis["server_cpu_ms_per_login"] / max(1e-9, memory["server_cpu_ms_per_login"])
    summary = {
        **redis,
        "memory_server_cpu_ms_per_login": memory["server_cpu_ms_per_login"],
        "memory_login_p99_ms": memory["login_p99_ms"],
        "memory_logins_per_s": memory["logins_per_s"],
        "cpu_per_login_vs_memory": round(ratio, 2),
    }
    print(f"server CPU per login: {ratio:.2f}x the in-memory server's in the same run")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
