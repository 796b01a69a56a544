"""A small asyncio client of Janus's WebSocket API: sessions, plugin handles, requests.

The room server is Janus's application server (docs/scaling.md): it alone speaks this
API, on a private address with the API secret, and clients never see it. This module
knows Janus's envelope, not the VideoRoom's vocabulary:

* a :class:`JanusConnection` is one WebSocket (subprotocol ``janus-protocol``) whose
  reader matches every answer to its request by ``transaction``;
* a :class:`JanusSession` keeps itself alive (``keepalive`` well inside Janus's session
  timeout) and owns its plugin handles;
* a :class:`JanusHandle` sends plugin messages: :meth:`JanusHandle.request` for the
  plugin's synchronous requests (``create``, ``destroy``, ``exists``) and
  :meth:`JanusHandle.message` for the asynchronous ones (``join``, ``publish``,
  ``start``), whose answer is the plugin's event for that transaction, with its JSEP;
  events Janus sends on its own (``webrtcup``, ``hangup``, a publisher leaving) go to
  :attr:`JanusHandle.events`.

A refusal, by Janus (``error``) or by the plugin (``error_code`` in its data), raises
:class:`JanusError` with Janus's own code and reason; a lost or unreachable Janus raises
:class:`JanusUnavailable` in every waiting request and sets
:attr:`JanusConnection.closed`.

Why our own: the asyncio Janus clients on PyPI either need Python 3.14 or bring aiortc
into the room server, which must never carry media code; the API needed here is a
dozen JSON messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..logs import log_event

log = logging.getLogger("edged.server.janus")

SUBPROTOCOL = "janus-protocol"
REQUEST_TIMEOUT_S = 10.0
KEEPALIVE_S = 25.0
"""Janus closes a session after 60 s without a request (its default session timeout)."""

Json = dict[str, Any]


class JanusError(Exception):
    """Janus or its plugin refused a request; ``code`` and ``reason`` are Janus's own."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class JanusUnavailable(ConnectionError):
    """Janus cannot be reached, or the connection to it was lost, or it did not answer."""


@dataclass(frozen=True, slots=True)
class PluginReply:
    """A plugin's answer: its data, and the session description it carries, if any."""

    data: Json
    jsep: Json | None


class JanusConnection:
    """One WebSocket to one Janus; requests are matched to answers by transaction."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        api_secret: str | None,
        timeout_s: float,
    ) -> None:
        self._http = http
        self._ws = ws
        self._secret = api_secret
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[asyncio.Future[Json], bool]] = {}
        self._handles: dict[int, JanusHandle] = {}
        self._sessions: dict[int, JanusSession] = {}
        self.closed = asyncio.Event()
        """Set when the WebSocket is gone: Janus stopped, crashed or was closed here."""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, *, api_secret: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> JanusConnection:
        """Open the WebSocket to ``url``; :class:`JanusUnavailable` when nothing answers
        within ``timeout_s`` (a host that drops packets included)."""
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=timeout_s))
        try:
            ws = await http.ws_connect(
                url,
                protocols=(SUBPROTOCOL,),
                heartbeat=None,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout_s),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await http.close()
            raise JanusUnavailable(f"cannot reach janus at {url}: {exc}") from None
        return cls(http, ws, api_secret=api_secret, timeout_s=timeout_s)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._http.close()
        self._lost("closed")

    # ---- requests ------------------------------------------------------------------

    async def request(self, body: Json, *, plugin_event: bool = False) -> Json:
        """Send ``body`` with a new transaction and return Janus's answer to it.

        With ``plugin_event`` the answer is the plugin's event for this transaction
        (Janus first acknowledges an asynchronous plugin message, or sends the event
        before its ``ack``); otherwise the first answer, ``ack`` included.
        """
        if self.closed.is_set():
            raise JanusUnavailable("the connection to janus is closed")
        transaction = f"t{next(self._ids)}"
        message = {**body, "transaction": transaction}
        if self._secret is not None:
            message["apisecret"] = self._secret
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = (future, plugin_event)
        try:
            await self._ws.send_str(json.dumps(message))
            answer = await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            raise JanusUnavailable(f"janus did not answer {body.get('janus')} in time") from None
        except (ConnectionError, RuntimeError) as exc:
            raise JanusUnavailable(f"the connection to janus is lost: {exc}") from None
        finally:
            self._pending.pop(transaction, None)
        if answer.get("janus") == "error":
            error = answer.get("error") or {}
            raise JanusError(int(error.get("code", 0)), str(error.get("reason", "")))
        return answer

    async def info(self) -> Json:
        """Janus's server info (version, plugins): a check that it answers at all."""
        return await self.request({"janus": "info"})

    async def create_session(self, keepalive_s: float = KEEPALIVE_S) -> JanusSession:
        answer = await self.request({"janus": "create"})
        session = JanusSession(self, int(answer["data"]["id"]), keepalive_s)
        self._sessions[session.session_id] = session
        return session

    def route(self, handle: JanusHandle) -> None:
        """Deliver the messages Janus sends on its own for ``handle`` to its events."""
        self._handles[handle.handle_id] = handle

    def unroute(self, handle_id: int) -> None:
        self._handles.pop(handle_id, None)

    def forget(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)

    # ---- the reader ----------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                try:
                    message = json.loads(frame.data)
                except ValueError:
                    log_event(log, logging.WARNING, "janus_bad_message")
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        finally:
            self._lost("janus closed the connection")

    def _dispatch(self, message: Json) -> None:
        kind = message.get("janus")
        pending = self._pending.get(str(message.get("transaction")))
        if pending is not None:
            future, plugin_event = pending
            if not (plugin_event and kind == "ack") and not future.done():
                future.set_result(message)
                return
            if kind == "ack":
                return
        handle = self._handles.get(int(message.get("sender") or 0))
        session = self._sessions.get(int(message.get("session_id") or 0))
        if handle is not None:
            handle.events.put_nowait(message)
        elif kind == "timeout" and session is not None:
            log_event(log, logging.WARNING, "janus_session_timeout", session=session.session_id)
            session.ended.set()
        elif kind not in ("ack", "keepalive"):
            log_event(log, logging.DEBUG, "janus_unrouted", kind=kind)

    def _lost(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(JanusUnavailable(reason))
        for handle in self._handles.values():
            handle.events.put_nowait({"janus": "connection_lost"})
        for session in self._sessions.values():
            session.ended.set()


class JanusSession:
    """A Janus session: kept alive while open, the owner of its plugin handles."""

    def __init__(self, conn: JanusConnection, session_id: int, keepalive_s: float) -> None:
        self.conn = conn
        self.session_id = session_id
        self.ended = asyncio.Event()
        """Set when Janus timed the session out or the connection to Janus was lost."""
        self._keepalive = asyncio.create_task(self._keep_alive(keepalive_s))

    async def _keep_alive(self, every_s: float) -> None:
        while not self.ended.is_set():
            await asyncio.sleep(every_s)
            try:
                await self.conn.request({"janus": "keepalive", "session_id": self.session_id})
            except (JanusError, JanusUnavailable) as exc:
                log_event(log, logging.WARNING, "janus_keepalive_failed", error=str(exc))
                return

    async def attach(self, plugin: str) -> JanusHandle:
        answer = await self.conn.request(
            {"janus": "attach", "plugin": plugin, "session_id": self.session_id}
        )
        handle = JanusHandle(self, int(answer["data"]["id"]))
        self.conn.route(handle)
        return handle

    async def destroy(self) -> None:
        """End the session (and every handle of it); nothing to do if Janus is gone."""
        self._keepalive.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keepalive
        self.conn.forget(self.session_id)
        with contextlib.suppress(JanusUnavailable, JanusError):
            await self.conn.request({"janus": "destroy", "session_id": self.session_id})


class JanusHandle:
    """A handle on one plugin within a session: its requests and its events."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.handle_id = handle_id
        self.events: asyncio.Queue[Json] = asyncio.Queue()
        """Messages Janus sends on its own for this handle (``webrtcup``, ``hangup``,
        ``media``, plugin events); ``{"janus": "connection_lost"}`` if Janus is lost."""

    def _envelope(self, kind: str, **fields: Any) -> Json:
        return {
            "janus": kind,
            "session_id": self.session.session_id,
            "handle_id": self.handle_id,
            **fields,
        }

    async def request(self, body: Json) -> Json:
        """A synchronous plugin request: the plugin's data, or :class:`JanusError`."""
        answer = await self.session.conn.request(self._envelope("message", body=body))
        return _plugin_reply(answer).data

    async def message(self, body: Json, jsep: Json | None = None) -> PluginReply:
        """An asynchronous plugin request: the plugin's event for it, with its JSEP."""
        fields: Json = {"body": body}
        if jsep is not None:
            fields["jsep"] = jsep
        answer = await self.session.conn.request(
            self._envelope("message", **fields), plugin_event=True
        )
        return _plugin_reply(answer)

    async def trickle(self, candidate: Json | None) -> None:
        """One ICE candidate (``candidate``, ``sdpMid``, ``sdpMLineIndex``), or None: done."""
        value: Json = candidate if candidate is not None else {"completed": True}
        await self.session.conn.request(self._envelope("trickle", candidate=value))

    async def detach(self) -> None:
        self.session.conn.unroute(self.handle_id)
        with contextlib.suppress(JanusUnavailable, JanusError):
            await self.session.conn.request(self._envelope("detach"))


def _plugin_reply(answer: Json) -> PluginReply:
    data = (answer.get("plugindata") or {}).get("data") or {}
    if "error_code" in data:
        raise JanusError(int(data["error_code"]), str(data.get("error", "")))
    return PluginReply(data, answer.get("jsep"))
