"""A client's WebSocket carried to the node that owns its room (multi-node, :mod:`.cluster`).

The node a client reached opens a WebSocket of its own to the owner's ``/ws``, with the
cluster secret and the client's address in headers, sends it the client's first message
(the login or resume it routed by), and then copies every text frame both ways until one
side closes, closing the other with the same code. The owner runs the session as if the
client were its own; this node keeps nothing but the two sockets, so when it dies the
client reconnects (through the load balancer, to any node) and resumes on the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from ..logs import log_event

log = logging.getLogger("edged.server.proxy")

CLUSTER_HEADER = "X-Edged-Cluster"
"""The cluster secret: a socket or request that carries it comes from another node."""
CLIENT_HEADER = "X-Edged-Client"
"""The address of the client a proxied socket carries (for the owner's limits and logs)."""


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    try:
        async for frame in source:
            if frame.type == WSMsgType.TEXT:
                await sink.send_str(frame.data)
            elif frame.type == WSMsgType.BINARY:
                await sink.send_bytes(frame.data)
            else:
                break
    except (ConnectionError, RuntimeError):
        pass  # the other side is closing: so is this one


async def proxy_socket(
    client: web.WebSocketResponse,
    first: str,
    owner_url: str,
    secret: str,
    address: str,
    http: aiohttp.ClientSession,
) -> bool:
    """Carry ``client`` (whose first message was ``first``) to the node at ``owner_url``.

    False when that node cannot be reached (the caller then answers the client itself).
    """
    url = owner_url.rstrip("/") + "/ws"
    headers = {CLUSTER_HEADER: secret, CLIENT_HEADER: address}
    try:
        async with asyncio.timeout(5.0):
            upstream = await http.ws_connect(url, headers=headers, heartbeat=None)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        log_event(log, logging.WARNING, "proxy_failed", owner=owner_url, reason=str(exc))
        return False
    try:
        await upstream.send_str(first)
        tasks = [
            asyncio.create_task(_pump(client, upstream)),
            asyncio.create_task(_pump(upstream, client)),
        ]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    except (ConnectionError, RuntimeError):
        pass
    finally:
        code = upstream.close_code or WSCloseCode.GOING_AWAY
        if not upstream.closed:
            with contextlib.suppress(Exception):
                await upstream.close()
        if not client.closed:
            with contextlib.suppress(Exception):
                await client.close(code=code)
    return True
