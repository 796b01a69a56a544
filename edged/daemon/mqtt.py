"""The MQTT control channel (product contract §3).

:class:`ControlChannel` owns the broker connection and everything that crosses it:
availability with a last will, the retained state snapshot, events, quality, the
snapshot JPEG, Home Assistant discovery, and commands with their responses. When the
broker goes away it reconnects with backoff and republishes what is retained; the call
itself never waits for the broker.

Retained payloads have one owner of "what the broker has seen": :meth:`_sync_retained`,
the only code that publishes them. It compares what the daemon wants retained with what
it has sent on this connection, so a change made at any moment (before, during or right
after the connection's first announce) is sent, and a reconnect or Home Assistant's
birth message only forgets what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..backoff import Backoff
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from .commands import Args, Command, CommandError, parse_command, response
from .topics import Topics

log = logging.getLogger("edged.daemon")
Payload = str | bytes


@dataclass(slots=True)
class MqttSettings:
    """Where the broker is and how to talk to it."""

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    protocol: int = 5  # 5 or 4 (3.1.1)
    keepalive: int = 30
    client_id: str | None = None
    retry_min: float = 0.5
    retry_max: float = 30.0


CommandHandler = Callable[[Command], Awaitable[Any]]


class ControlChannel:
    """Owns the broker connection, the retained payloads and the command worker."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        on_command: CommandHandler,
        schemas: Mapping[str, type[Args]],
        ha_status_topic: str = "homeassistant/status",
        queue_limit: int = 32,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.ha_status_topic = ha_status_topic
        self._on_command = on_command
        self._schemas = schemas
        self.retained: dict[str, Payload] = {}  # topic -> latest retained payload
        self.discovery: tuple[str, Payload] | None = None
        # What the broker has seen on this connection (cleared on connect and on HA's
        # birth message); written only by _sync_retained, after each publish succeeds.
        self._sent: dict[str, Payload] = {}
        self._sent_discovery: tuple[str, Payload] | None = None
        self._live: deque[tuple[str, Payload]] = deque(maxlen=256)
        self._wake = asyncio.Event()
        self._commands: asyncio.Queue[tuple[Command, Properties | None]] = asyncio.Queue(
            queue_limit
        )
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.dropped_events = 0
        self._stopping = False

    # ---- what the daemon publishes -------------------------------------------------

    def set_retained(self, topic: str, payload: Payload) -> None:
        """Publish ``payload`` retained now (if connected) and again after a reconnect."""
        self.retained[topic] = payload
        self._wake.set()

    def publish_state(self, state: dict[str, Any]) -> None:
        self.set_retained(self.topics.state, json.dumps(state))

    def publish(self, topic: str, payload: Payload) -> None:
        """Publish a non-retained message; dropped (and counted) while disconnected."""
        if not self.connected.is_set():
            self.dropped_events += 1
            return
        self._live.append((topic, payload))
        self._wake.set()

    def publish_event(self, event: dict[str, Any]) -> None:
        self.publish(self.topics.event, json.dumps(event))

    def set_discovery(self, topic: str, payload: dict[str, Any]) -> None:
        self.discovery = (topic, json.dumps(payload))
        self._wake.set()

    # ---- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with backoff."""
        worker = asyncio.create_task(self._command_worker())
        backoff = Backoff(self.settings.retry_min, self.settings.retry_max)
        try:
            while not self._stopping:
                try:
                    await self._session()
                    backoff.reset()
                except aiomqtt.MqttError as exc:
                    log_event(
                        log,
                        logging.WARNING,
                        "mqtt_disconnected",
                        error=str(exc),
                        code=int(ErrorCode.BROKER_CONNECTION_LOST),
                        retry_s=backoff.delay,
                    )
                finally:
                    self._client = None
                    self.connected.clear()
                if self._stopping:
                    break
                await asyncio.sleep(backoff.next())
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _client_for(self) -> aiomqtt.Client:
        s = self.settings
        protocol = aiomqtt.ProtocolVersion.V5 if s.protocol == 5 else aiomqtt.ProtocolVersion.V311
        will = aiomqtt.Will(self.topics.availability, "offline", qos=1, retain=True)
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            protocol=protocol,
            will=will,
            keepalive=s.keepalive,
            tls_context=s.tls,
            timeout=10,
        )

    async def _session(self) -> None:
        async with self._client_for() as client:
            self._client = client
            self.connections += 1
            await client.publish(self.topics.availability, "online", qos=1, retain=True)
            await client.subscribe(self.topics.command, qos=1)
            await client.subscribe(self.ha_status_topic, qos=1)
            self._forget_sent()
            await self._sync_retained(client)
            self.connected.set()
            log_event(
                log,
                logging.INFO,
                "mqtt_connected",
                host=self.settings.host,
                port=self.settings.port,
            )
            sender = asyncio.create_task(self._send_loop(client))
            try:
                async for message in client.messages:
                    await self._on_message(message)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    def _forget_sent(self) -> None:
        """Treat every retained payload as unseen: the next sync publishes them all."""
        self._sent.clear()
        self._sent_discovery = None
        self._wake.set()

    async def _sync_retained(self, client: aiomqtt.Client) -> None:
        """Publish what the broker has not seen: discovery first (HA wants config before
        state), then each retained topic whose latest payload differs from the one sent."""
        discovery = self.discovery
        if discovery is not None and discovery != self._sent_discovery:
            await client.publish(*discovery, qos=1, retain=True)
            self._sent_discovery = discovery
        for topic, payload in list(self.retained.items()):
            if self._sent.get(topic) != payload:
                await client.publish(topic, payload, qos=1, retain=True)
                self._sent[topic] = payload

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._sync_retained(client)
            while self._live:
                topic, payload = self._live.popleft()
                await client.publish(topic, payload, qos=0)

    async def _on_message(self, message: aiomqtt.Message) -> None:
        if message.topic.matches(self.ha_status_topic):
            if message.payload in (b"online", "online"):
                log_event(log, logging.INFO, "ha_online_republish")
                self._forget_sent()  # the send loop republishes discovery, then state
            return
        props = message.properties
        payload = message.payload if isinstance(message.payload, bytes | str) else b""
        try:
            command = parse_command(payload, self._schemas)
        except CommandError as exc:
            await self._respond(response(exc.name, exc.request_id, error=exc), props)
            return
        try:
            self._commands.put_nowait((command, props))
        except asyncio.QueueFull:
            err = EdgedError(ErrorCode.COMMAND_RATE_LIMITED)
            await self._respond(response(command.name, command.request_id, error=err), props)

    async def _command_worker(self) -> None:
        """Run commands one at a time, in order; nothing a client sends stops the daemon."""
        while True:
            command, props = await self._commands.get()
            try:
                result = await self._on_command(command)
                body = response(command.name, command.request_id, result=result)
            except EdgedError as exc:
                body = response(command.name, command.request_id, error=exc)
            except Exception:
                log.exception("command %s failed", command.name)
                body = response(
                    command.name, command.request_id, error=EdgedError(ErrorCode.INTERNAL_ERROR)
                )
            await self._respond(body, props)

    async def _respond(self, body: dict[str, Any], request: Properties | None) -> None:
        """Answer on the request's MQTT 5 response topic (with its correlation data) or ours."""
        client = self._client
        if client is None:
            return
        topic = self.topics.response
        props: Properties | None = None
        response_topic = getattr(request, "ResponseTopic", None) if request else None
        if response_topic:
            topic = response_topic
        correlation = getattr(request, "CorrelationData", None) if request else None
        if correlation is not None and self.settings.protocol == 5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topic, json.dumps(body), qos=1, properties=props)

    async def stop(self) -> None:
        """Publish ``offline`` (a clean stop is no crash) and disconnect."""
        self._stopping = True
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await asyncio.wait_for(
                    client.publish(self.topics.availability, "offline", qos=1, retain=True), 5
                )
