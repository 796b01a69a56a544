"""The daemon's configuration as one typed record, mapped onto the engine and the server.

Every section is optional and every key has a documented default (docs/configuration.md),
so an empty file is a working configuration: an embedded room server, automatic login
and publishing, MQTT on localhost. This module stays light: it imports neither aiortc
nor the engine until a mapping method needs it.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from ..media.board import fits_level_31
from ..model import User
from .sections import (
    AudioSection,
    AutoSection,
    DeviceSection,
    IceSection,
    LoggingSection,
    MqttSection,
    RoomSection,
    Section,
    ServerSection,
    TimersSection,
    VideoSection,
)
from .types import defaults_if_none

if TYPE_CHECKING:
    from ..engine.config import AudioConfig, EngineProfile, PublishConfig, RoomConfig, VideoConfig
    from ..media.board import Picture
    from ..server.settings import ServerSettings


DEFAULT_PATH = Path("/etc/edged/edged.yaml")


def default_device_id() -> str:
    """A stable id: a hash of /etc/machine-id (never the id itself), else the host name."""
    for name in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine = Path(name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if machine:
            return "edged-" + hashlib.sha256(b"edged:" + machine.encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:64] or "edged"


def _sec(cls: type[Section]) -> Any:
    return Field(default_factory=cls)


def _put(model: BaseModel, name: str, value: Any) -> None:
    object.__setattr__(model, name, value)


class Config(Section):
    """The whole configuration: owns every section and maps them onto engine and server.

    After validation the derived defaults are filled in: device id and name, room and
    user id, user name, published stream id, MQTT client id and ``server.enabled``.
    """

    device: Annotated[DeviceSection, BeforeValidator(defaults_if_none)] = _sec(DeviceSection)
    room: Annotated[RoomSection, BeforeValidator(defaults_if_none)] = _sec(RoomSection)
    auto: Annotated[AutoSection, BeforeValidator(defaults_if_none)] = _sec(AutoSection)
    video: Annotated[VideoSection, BeforeValidator(defaults_if_none)] = _sec(VideoSection)
    audio: Annotated[AudioSection, BeforeValidator(defaults_if_none)] = _sec(AudioSection)
    mqtt: Annotated[MqttSection, BeforeValidator(defaults_if_none)] = _sec(MqttSection)
    ice: Annotated[IceSection, BeforeValidator(defaults_if_none)] = _sec(IceSection)
    server: Annotated[ServerSection, BeforeValidator(defaults_if_none)] = _sec(ServerSection)
    timers: Annotated[TimersSection, BeforeValidator(defaults_if_none)] = _sec(TimersSection)
    logging: Annotated[LoggingSection, BeforeValidator(defaults_if_none)] = _sec(LoggingSection)

    @model_validator(mode="after")
    def _derive_defaults(self) -> Config:
        dev, room, pub = self.device, self.room, self.auto.publish
        did = dev.id or default_device_id()
        name = dev.name or socket.gethostname()[:256] or did
        _put(self, "device", dev.model_copy(update={"id": did, "name": name}))
        room_ids = {"room_id": room.room_id or did, "user_id": room.user_id or did}
        _put(
            self, "room", room.model_copy(update={**room_ids, "user_name": room.user_name or name})
        )
        pub = pub.model_copy(update={"stream_id": pub.stream_id or f"{did}-cam"})
        _put(self, "auto", self.auto.model_copy(update={"publish": pub}))
        _put(self, "mqtt", self.mqtt.model_copy(update={"client_id": self.mqtt.client_id or did}))
        if self.server.enabled is None:
            enabled = not room.server_url
            _put(self, "server", self.server.model_copy(update={"enabled": enabled}))
        return self

    # ---- mapping onto the server and the engine ----------------------------------------

    @property
    def embedded_server(self) -> bool:
        """Whether the daemon runs the room server itself."""
        return bool(self.server.enabled)

    def effective_server_url(self) -> str:
        """room.server_url, else the embedded server's URL (ws://127.0.0.1:8790/ws)."""
        if self.room.server_url:
            return self.room.server_url
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(
            self.server.host, self.server.host
        )
        host = f"[{host}]" if ":" in host else host
        return f"{'wss' if self.server.tls else 'ws'}://{host}:{self.server.port}/ws"

    def apps_path(self) -> Path:
        """The embedded server's apps file (app ids and their generated secrets)."""
        from ..server.apps import default_apps_path

        return self.server.apps_file or default_apps_path()

    def server_settings(self, apps: Mapping[str, str] | None = None) -> ServerSettings:
        """The embedded server's settings; without ``apps``, the apps file is read.

        Reading creates the file with a new secret for room.app_id when it has none.
        An app secret given in room overrides the file's for room.app_id.
        """
        from ..server.apps import load_apps
        from ..server.cluster import cluster_settings
        from ..server.forwarded import trusted_networks
        from ..server.settings import ServerSettings, SfuSettings
        from ..server.turn import TurnSettings

        s = self.server
        sfu = None
        if s.sfu is not None:
            secret = s.sfu.api_secret.get_secret_value() if s.sfu.api_secret else None
            sfu = SfuSettings(
                list(s.sfu.urls),
                secret,
                relay=s.sfu.relay,
                p2p_max_viewers=s.sfu.p2p_max_viewers,
                bitrate_cap=s.sfu.bitrate_cap,
            )
        turn = None
        if s.turn is not None and s.turn.secret is not None:
            turn = TurnSettings(
                list(s.turn.urls),
                s.turn.secret.get_secret_value(),
                min_ttl_s=s.turn.min_ttl_s,
                max_ttl_s=s.turn.max_ttl_s,
            )
        c = s.cluster
        cluster = cluster_settings(
            s.store,
            host=s.host,
            port=s.port,
            https=s.tls is not None,
            secret=c.secret.get_secret_value() if c is not None and c.secret else None,
            node_id=c.node_id if c is not None else None,
            advertise_url=c.advertise_url if c is not None else None,
        )
        known = dict(apps) if apps is not None else load_apps(self.apps_path(), self.room.app_id)
        if self.room.app_secret is not None:
            known[self.room.app_id] = self.room.app_secret.get_secret_value()
        return ServerSettings(
            apps=known,
            host=s.host,
            port=s.port,
            dev_mode=s.dev_mode,
            heartbeat_interval_s=s.heartbeat_interval_s,
            heartbeat_timeout_s=s.heartbeat_timeout_s,
            ice_servers=list(self.ice_server_dicts()),
            cert_file=str(s.tls.cert_file) if s.tls else None,
            key_file=str(s.tls.key_file) if s.tls else None,
            sfu=sfu,
            turn=turn,
            cluster=cluster,
            trusted_proxies=trusted_networks(s.trusted_proxies),
        )

    def engine_profile(
        self, server_url: str | None = None, *, apps: Mapping[str, str] | None = None
    ) -> EngineProfile:
        """The engine's profile. Credentials: room.token and room.app_secret, else (with
        the embedded server) the app's secret from ``apps`` or the apps file.

        Source factories stay the engine's defaults (test pattern, tone); the daemon
        replaces them for cameras and microphones.
        """
        from ..engine.config import EngineProfile, EngineTimers

        room, t = self.room, self.timers
        token = room.token.get_secret_value() if room.token else None
        secret = room.app_secret.get_secret_value() if room.app_secret else None
        if secret is None and token is None and self.embedded_server and not room.server_url:
            if apps is None:
                from ..server.apps import load_apps

                apps = load_apps(self.apps_path())
            secret = apps.get(room.app_id)
        elif secret is None and apps is not None:
            secret = apps.get(room.app_id)
        timers = EngineTimers(
            request_timeout=t.request_timeout_s,
            connect_timeout=t.connect_timeout_s,
            retry_min=t.retry_min_s,
            retry_max=t.retry_max_s,
            reconnect_give_up=t.reconnect_give_up_s,
            play_retry=t.play_retry_s,
            keyframe_min_interval=t.keyframe_min_interval_s,
            quality_interval=t.quality_interval_s,
            token_renew_before=t.token_renew_before_s,
        )
        return EngineProfile(
            app_id=room.app_id,
            server_url=server_url or self.effective_server_url(),
            token=token,
            app_secret=secret,
            token_ttl_s=room.token_ttl_s,
            scenario=room.scenario,
            ice_servers=self.ice_server_dicts(),
            timers=timers,
            video=self.video_config(),
            audio=self.audio_config(),
        )

    def video_config(self, board: Picture | None = None) -> VideoConfig:
        """The scenario's video settings, brought within what the ``board`` publishes
        (its size when the scenario's is larger, the lower rate and bitrate), with the
        keys set in ``video`` applied: a key set always wins."""
        from dataclasses import replace

        from ..engine.config import SCENARIO_VIDEO

        base = SCENARIO_VIDEO[self.room.scenario]
        if board is not None:
            if base.width * base.height > board.width * board.height:
                base = replace(base, width=board.width, height=board.height)
            base = replace(base, fps=min(base.fps, board.fps))
            base = replace(base, bitrate=min(base.bitrate, board.bitrate))
        keys = ("width", "height", "fps", "bitrate", "min_bitrate", "max_bitrate")
        given = {k: getattr(self.video, k) for k in (*keys, "keyframe_interval_s")}
        return replace(base, **{k: v for k, v in given.items() if v is not None})

    def audio_config(self) -> AudioConfig:
        from ..engine.config import AudioConfig

        a = self.audio
        return AudioConfig(sample_rate=a.sample_rate, channels=a.channels, bitrate=a.bitrate)

    def room_config(self) -> RoomConfig:
        """The options of each login."""
        from ..engine.config import RoomConfig

        return RoomConfig(user_update=self.room.user_update, max_members=self.room.max_members)

    def publish_config(self) -> PublishConfig:
        """The options of the automatically published stream."""
        from ..engine.config import PublishConfig
        from ..engine.whip_out import WhipTarget

        p = self.auto.publish
        targets = tuple(
            WhipTarget(t.url, t.token.get_secret_value() if t.token else None) for t in p.targets
        )
        return PublishConfig(
            targets=targets,
            extra_info=p.extra_info,
            max_viewers=p.max_viewers,
            relay=p.relay,
            p2p_max_viewers=p.p2p_max_viewers,
            video=self.video.source != "none",
            audio=self.audio.source != "none",
        )

    def user(self) -> User:
        return User(self.room.user_id, self.room.user_name)

    def ice_server_dicts(self) -> list[dict[str, Any]]:
        """ICE servers as the engine and server take them (credentials revealed)."""
        return [
            {
                "urls": list(s.urls),
                "username": s.username or None,
                "credential": s.credential.get_secret_value() if s.credential else None,
            }
            for s in self.ice.servers
        ]

    def summary(self) -> str:
        """One line: who, where, what is published and the control channel."""
        r, p, m = self.room, self.auto.publish, self.mqtt
        where = self.effective_server_url() + (" (embedded)" if self.embedded_server else "")
        pub = f"publish {p.stream_id}" if p.enabled else "no publish"
        media = f"video {self.video.source}, audio {self.audio.source}"
        mqtt = f"mqtt {m.host}:{m.port} {m.base_topic}/{self.device.id}" if m.enabled else "no mqtt"
        who = f"device {self.device.id}: room {r.room_id} as {r.user_id} on {where}"
        return f"{who}; {pub} ({media}); {mqtt}"

    def warnings(self) -> list[str]:
        """Things that work but are likely not what was meant."""
        out = []
        r, s = self.room, self.server
        if r.server_url and r.token is None and r.app_secret is None:
            out.append("room: no token or app_secret: the room server must be in dev mode")
        if r.token is not None and r.app_secret is None:
            out.append(
                "room.token: cannot be renewed without app_secret; the session ends at expiry"
            )
        if self.embedded_server and s.dev_mode and s.host not in ("127.0.0.1", "::1", "localhost"):
            out.append(
                f"server.dev_mode: anyone reaching {s.host}:{s.port} logs in without a token"
            )
        if self.mqtt.enabled and self.mqtt.tls and self.mqtt.tls.insecure:
            out.append("mqtt.tls.insecure: the broker's certificate is not verified")
        v = self.video_config()
        if not fits_level_31(v.width, v.height, v.fps):
            out.append(
                f"video: {v.width}x{v.height} at {v.fps:g} fps is beyond H.264 level 3.1, the"
                " level edged negotiates (at most 1280x720 at 30 fps): the encoder shrinks it"
            )
        return out
