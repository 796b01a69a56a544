"""A published stream sent also to external WHIP endpoints (RFC 9725), from its one encode.

Each :class:`WhipTarget` (MediaMTX, Janus, LiveKit ingress, a cloud, another edged room
server's WHIP ingest) gets a :class:`WhipSender`: a peer connection fed by the stream's
fan-outs, exactly like a viewer's link, whose offer goes to the endpoint by ``POST``
(with the target's bearer token) and whose answer comes back in the ``201``. When the
endpoint refuses, cannot be reached or the connection fails, the sender closes that
connection (``DELETE`` on the resource when there was one) and tries again after a
backoff (``retry_min_s``, doubling up to ``retry_max_s``), for as long as the stream is
published. Its state is in the publisher's view (:class:`TargetInfo`).

No WHIP client library fits: the client side is one ``POST`` and a ``DELETE`` around a
peer connection that must be fed by edged's own fan-outs, not by a library's tracks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection

from ..backoff import Backoff
from ..logs import log_event
from ..model import WhipTargetInfo as TargetInfo
from ..model import WhipTargetState as TargetState
from ..protocol import SessionDescription
from .peer import connection_ended, make_peer_connection, set_remote_description, watch_ice

log = logging.getLogger("edged.engine")

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class WhipTarget:
    """An external WHIP endpoint and the bearer token it wants (None: no header)."""

    url: str
    token: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"WhipTarget({self.url!r})"


AddTracks = Callable[[RTCPeerConnection, str], list[Any]]


class WhipSender:
    """Owns one target's peer connection, its resource on the endpoint and its retries."""

    def __init__(
        self,
        target: WhipTarget,
        add_tracks: AddTracks,
        ice_servers: Callable[[], list[dict[str, Any]]],
        backoff: Backoff,
    ) -> None:
        self.target = target
        self._add_tracks = add_tracks
        self._ice_servers = ice_servers
        self._backoff = backoff
        self.state = TargetState.CONNECTING
        self.error = ""
        self.attempts = 0
        self._task: asyncio.Task[None] | None = None

    def info(self) -> TargetInfo:
        return TargetInfo(self.target.url, self.state, self.error, self.attempts)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        headers = {"Content-Type": "application/sdp"}
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                self.attempts += 1
                self.state = TargetState.CONNECTING
                await self._attempt(http, headers)
                self.state = TargetState.RETRYING
                log_event(
                    log, logging.WARNING, "whip_target_retry", url=self.target.url, error=self.error
                )
                await asyncio.sleep(self._backoff.next())

    async def _attempt(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        """One connection: offer, answer, send until it fails; always cleaned up."""
        pc = make_peer_connection(self._ice_servers())
        tracks = self._add_tracks(pc, f"whip {self.target.url}")
        resource: str | None = None
        ended = asyncio.Event()
        ice_failed = watch_ice(pc)

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            if pc.connectionState == "connected":
                self.state, self.error = TargetState.SENDING, ""
                self._backoff.reset()
            if connection_ended(pc, ice_failed):
                ended.set()

        try:
            await pc.setLocalDescription(await pc.createOffer())
            offer = pc.localDescription.sdp
            async with http.post(self.target.url, data=offer, headers=headers) as response:
                body = await response.text()
                if response.status != 201:
                    self.error = f"HTTP {response.status}: {body[:200]}"
                    return
                resource = urljoin(self.target.url, response.headers.get("Location", ""))
            answer = SessionDescription(type="answer", sdp=body)
            if not await set_remote_description(pc, answer):
                self.error = "the endpoint's answer was refused"
                return
            await ended.wait()
            self.error = f"connection {pc.connectionState}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            # The session ends by its DELETE first (RFC 9725): an endpoint that sees the
            # connection close before it may forget the resource and answer the DELETE 404.
            if resource:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.delete(resource, headers=_auth(headers)):
                        pass
            for track in tracks:
                track.stop()
            with contextlib.suppress(Exception):
                await pc.close()


def _auth(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k == "Authorization"}
