"""The service ``edged run`` starts: configuration in, a device in its room out.

:class:`Daemon` builds the parts and wires each to exactly what it uses: the embedded
room server (when configured), the engine, the state tracker, the desired state
(:mod:`.desired`), the supervisor that restores it (:mod:`.supervisor`), the command
handlers (:mod:`.actions`), the speaker and snapshots (:mod:`.sinks`), the periodic
reports (:mod:`.reports`), the MQTT control channel (:mod:`.mqtt`) and the systemd
integration. It owns their start and stop, the reload of the configuration and what goes
out as state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__
from ..config.document import ConfigError
from ..config.load import changed_sections, load_config
from ..config.model import Config
from ..engine.engine import Engine
from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..media.alsa.pcm import alsa_available
from ..media.board import board_defaults, detect_board
from ..server.run import start_server
from ..tokens import room_token
from . import systemd
from .actions import SCHEMAS, Actions
from .audio import DeviceAudio, JsonDict
from .desired import DesiredState
from .discovery import build_discovery
from .discovery_device import device_info, web_page_url
from .health import HealthReader
from .memory import Trimmer
from .mqtt import ControlChannel, MqttSettings
from .reports import Reports
from .sinks import Snapshots, Speaker
from .sources import MediaChoice, apply_sources
from .state import StateTracker
from .supervisor import Supervisor
from .topics import Topics, ha_status_topic

log = logging.getLogger("edged.daemon")


class Daemon:
    """Owns the parts the running service is made of, their start, stop and reload."""

    def __init__(self, config_path: Path | None, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.server_runner: web.AppRunner | None = None
        self.apps: dict[str, str] | None = None
        if config.embedded_server:  # its apps file holds the secret our tokens need
            self.apps = dict(config.server_settings().apps)
        self.tracker = StateTracker(config.device.id, self._state_changed, self._event)
        self.tracker.user_id = config.room.user_id
        self.audio = DeviceAudio(config.audio, self._audio_changed)
        self.tracker.audio = self.audio.state()
        self.media: MediaChoice | None = None
        self.board = board_defaults(detect_board())
        for reason in self.board.reasons:
            log.info("%s", reason)
        self.engine = self._make_engine()
        self.topics = Topics(config.mqtt.base_topic, config.device.id)
        self.channel: ControlChannel | None = None
        self.desired = DesiredState(config, self.media)
        self.speaker = Speaker(lambda: self.config.audio, self.audio.intercom)
        self.supervisor = Supervisor(lambda: self.engine, self.desired, self.player_sink)
        self.snapshots = Snapshots(lambda: self.engine, self._publish_snapshot)
        self.actions = Actions(
            lambda: self.engine,
            self.desired,
            self.supervisor,
            self.snapshots,
            self.tracker.snapshot,
            self.audio,
            web_page_url(config),
        )
        m = config.mqtt
        self.reports = Reports(
            m.quality_interval_s,
            m.snapshot_interval_s,
            lambda: self.channel,
            self.topics.quality,
            self.tracker.quality,
            self.snapshots,
            self.status_line,
        )
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel_task: asyncio.Task[Any] | None = None
        self._state_dirty = False
        self.watchdog = systemd.Watchdog()
        self.trimmer = Trimmer()

    # ---- building ------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        profile = self.config.engine_profile(apps=self.apps)
        self.media = apply_sources(profile, self.config, self.audio.intercom, self.board)
        return Engine(profile, self.tracker, talkback=self.talkback_sink)

    async def _start_server(self) -> None:
        if not self.config.embedded_server:
            return
        settings = self.config.server_settings(self.apps)
        self.server_runner = await start_server(settings)
        log_event(log, logging.INFO, "embedded_server", host=settings.host, port=settings.port)
        if self.config.server.print_join_info:
            print(self.join_info(), file=sys.stderr, flush=True)

    def join_info(self) -> str:
        """What a person needs to join the device's room from the web page."""
        from urllib.parse import urlencode

        cfg = self.config
        secret = (self.apps or {}).get(cfg.room.app_id)
        room_id = self.desired.room_id
        token = room_token(secret, cfg.room.app_id, "guest", room_id, 3600) or ""
        scheme = "https" if cfg.server.tls else "http"
        host = cfg.server.host if cfg.server.host not in ("0.0.0.0", "::") else socket.getfqdn()
        query = urlencode(
            {"app": cfg.room.app_id, "room": room_id, "user": "guest", "token": token}
        )
        return (
            f"Join the call from a browser (token valid 1 h):\n"
            f"  {scheme}://{host}:{cfg.server.port}/?{query}\n"
            f"  app {cfg.room.app_id}, room {room_id}, user guest"
        )

    def _make_channel(self) -> ControlChannel | None:
        m = self.config.mqtt
        if not m.enabled:
            return None
        settings = MqttSettings(
            host=m.host,
            port=m.port,
            username=m.username or None,
            password=m.password.get_secret_value() if m.password else None,
            tls=m.tls.ssl_context() if m.tls else None,
            protocol=m.protocol_version,
            keepalive=m.keepalive_s,
            client_id=m.client_id,
        )
        channel = ControlChannel(
            settings, self.topics, self.actions.run, SCHEMAS, ha_status_topic(m.discovery_prefix)
        )
        if m.discovery:
            health = HealthReader().read()
            channel.set_discovery(
                *build_discovery(
                    self.topics,
                    self.config.device.id,
                    self.config.device.name,
                    __version__,
                    m.discovery_prefix,
                    health=health,
                    device=device_info(self.config, self.board.board.model),
                    audio=alsa_available(),
                )
            )
            if health.reports_temperature or health.reports_throttling:
                channel.set_retained(self.topics.health, json.dumps(health.to_json()))
        return channel

    # ---- running -------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        await self._start_server()
        self.channel = self._make_channel()
        self._publish_state()
        if self.channel is not None:
            self._channel_task = self._spawn(self.channel.run())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.channel.connected.wait(), 5)
        self.supervisor.start()
        self.reports.start()
        self._spawn(self.trimmer.run())
        self.watchdog.start()
        systemd.ready(self.status_line())
        log_event(log, logging.INFO, "daemon_ready", summary=self.config.summary())
        await self._stop.wait()
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        """Log out (the server hears it before we exit), then close everything."""
        log_event(log, logging.INFO, "daemon_stopping")
        systemd.stopping("logging out")
        systemd.extend_timeout(15)
        self.desired.login = False
        await self.supervisor.stop()
        await self.reports.stop()
        channel_task = self._channel_task
        for task in [t for t in self._tasks if t is not channel_task]:
            task.cancel()
        await asyncio.gather(
            *[t for t in self._tasks if t is not channel_task], return_exceptions=True
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.engine.destroy(), 10)
        log_event(log, logging.INFO, "logged_out")
        self._publish_state()
        if self.channel is not None:
            await asyncio.sleep(0.05)
            await self.channel.stop()
        await self.watchdog.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.speaker.close()
        self.audio.close()
        if self.server_runner is not None:
            await self.server_runner.cleanup()
        log_event(log, logging.INFO, "daemon_stopped")

    def stop(self) -> None:
        self._stop.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- state out -----------------------------------------------------------------

    def _state_changed(self) -> None:
        if not self._state_dirty:
            self._state_dirty = True
            asyncio.get_running_loop().call_soon(self._publish_state)
        self.supervisor.wake()

    def _publish_state(self) -> None:
        self._state_dirty = False
        self.tracker.forget_stopped()
        if self.channel is not None:
            self.channel.publish_state(self.tracker.snapshot())
        systemd.status(self.status_line())

    def _audio_changed(self, state: JsonDict) -> None:
        self.tracker.audio = state
        self._state_changed()

    def _event(self, event: JsonDict) -> None:
        if self.channel is None:
            return
        self.channel.publish_event(event)
        if event["event"] == "room_user_update":
            kind = "joined" if event["update_type"] == "ADD" else "left"
            for user in event["users"]:
                self.channel.publish(
                    self.topics.user_event, json.dumps({"event_type": kind, **user})
                )

    def status_line(self) -> str:
        """The one-line STATUS systemd shows: room state, publishing, viewers."""
        t = self.tracker
        pub = next(iter(t.publishers.items()), None)
        publishing = f"{pub[0]} {pub[1][0].name}" if pub else "not publishing"
        viewers = sum(t.viewers.values())
        return f"room {t.room_id or '-'} {t.room_state.name}; {publishing}; {viewers} viewers"

    # ---- reload --------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read the file again and apply what changed; a bad file changes nothing."""
        systemd.reloading("reloading configuration")
        if self.config_path is None:
            systemd.ready(self.status_line())
            return
        try:
            new = load_config(self.config_path)
        except (ConfigError, EdgedError) as exc:
            log_event(
                log,
                logging.ERROR,
                "reload_failed",
                code=int(ErrorCode.CONFIG_RELOAD_FAILED),
                problem=exc.message,
            )
            systemd.ready(self.status_line())
            return
        changed = changed_sections(self.config, new)
        log_event(log, logging.INFO, "reload", changed=",".join(sorted(changed)) or "nothing")
        self.config = new
        if "logging" in changed:
            logging.getLogger().setLevel(new.logging.level)
        if "audio" in changed:
            self.audio.configure(new.audio)
        if changed & {"room", "auto", "video", "audio", "timers", "ice", "device"}:
            async with self.supervisor.lock:
                await self.engine.destroy()
                self.tracker.user_id = new.room.user_id
                self.engine = self._make_engine()
                self.desired.reset(new, self.media)
            self.supervisor.wake()
        if "mqtt" in changed and self.channel is not None:
            await self.channel.stop()
            self.channel = self._make_channel()
            if self.channel is not None:
                self._channel_task = self._spawn(self.channel.run())
        systemd.ready(self.status_line())

    def player_sink(self, stream_id: str) -> Any:
        """Where a played stream goes: the speaker when the board has one, else nowhere."""
        return self.speaker.input()

    def talkback_sink(self, user_id: str) -> Any:
        """Where a WHEP viewer's microphone goes: the speaker, mixed with the played
        streams, unless ``audio.talkback`` is off (the viewer's audio is then declined)."""
        return self.speaker.input() if self.config.audio.talkback else None

    def _publish_snapshot(self, jpeg: bytes) -> None:
        if self.channel is not None:
            self.channel.set_retained(self.topics.snapshot, jpeg)


async def run_daemon(config_path: Path | None, config: Config) -> int:
    return await Daemon(config_path, config).run()
