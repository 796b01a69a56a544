"""The seed's call, signaling only: A and B log in, B publishes, A plays, B leaves.

Runs a room server on 127.0.0.1 and prints every message A receives, so you can watch
the room model work. Usage: python examples/seed_call.py
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from edged.engine.signaling import LinkState, SignalingClient
from edged.errors import ErrorCode
from edged.protocol import Login, Play, Publish, ServerMessage
from edged.server.app import RoomServer
from edged.server.settings import ServerSettings
from edged.tokens import generate_secret, mint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def show(who: str) -> tuple[object, object]:
    def on_push(msg: ServerMessage) -> None:
        print(f"  {who} <- {msg.model_dump_json(exclude_none=True, exclude={'seq'})}")

    def on_state(state: LinkState, code: ErrorCode | None) -> None:
        print(f"  {who} connection {state.value} {code or ''}")

    return on_push, on_state


async def main() -> None:
    secret, port = generate_secret(), free_port()
    server = RoomServer(ServerSettings(apps={"demo": secret}, port=port))
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"ws://127.0.0.1:{port}/ws"
    print(f"room server on {url}")

    a = SignalingClient(url, *show("A"))  # type: ignore[arg-type]
    b = SignalingClient(url, *show("B"))  # type: ignore[arg-type]
    for client, user in ((a, "A"), (b, "B")):
        print(f"{user} logs into room r1")
        await client.login(
            Login(
                app_id="demo",
                room_id="r1",
                user_id=user,
                token=mint(secret, "demo", user, 300),
                user_update=True,
            )
        )
        await asyncio.sleep(0.1)
    print("B publishes s1")
    await b.request(Publish(stream_id="s1", extra_info="camera"))
    await asyncio.sleep(0.1)
    print("A plays s1")
    link = await a.request(Play(stream_id="s1"))
    print(f"  A: link {link['link_id']} opened to B")
    await asyncio.sleep(0.1)
    print("B logs out")
    await b.logout()
    await asyncio.sleep(0.2)
    await a.logout()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
