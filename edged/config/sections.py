"""The sections of the configuration file: their keys, types, defaults and checks.

Each section is a frozen pydantic model that forbids unknown keys, so that a typo is
an error naming the key. docs/configuration.md documents every key defined here.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
)

from ..errors import EdgedError, ErrorCode
from ..model import Scenario
from ..protocol import ID_PATTERN, ExtraInfo
from .document import ConfigProblem, Document, KeyPath, problem_at
from .types import (
    MAX_SECRET_BYTES,
    Bitrate,
    EnvName,
    Host,
    InlineSecret,
    OptFile,
    OptId64,
    OptId128,
    OptPath,
    PlaySpec,
    Port,
    Seconds,
    Size,
    Text,
    Topic,
    bit_rate,
    blank_if_none,
    defaults_if_none,
    echo_mode,
    ice_url,
    ice_urls,
    ip_network,
    off_is_none,
    turn_url,
    upper,
    ws_url,
)


class Section(BaseModel):
    """Common rules: unknown keys are errors, values are immutable, secrets stay hidden."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        coerce_numbers_to_str=True,
        hide_input_in_errors=True,
    )
    secrets: ClassVar[tuple[str, ...]] = ()

    def with_secrets(
        self, path: KeyPath, doc: Document, env: Mapping[str, str], problems: list[ConfigProblem]
    ) -> Self:
        """This section with each secret's ``*_file`` or ``*_env`` read into its key;
        what cannot be read goes to ``problems`` (named by key, never showing a value)."""
        update: dict[str, SecretStr] = {}
        for name in self.secrets:
            given = [k for k in (name, f"{name}_file", f"{name}_env") if getattr(self, k)]
            if len(given) > 1:
                text = f"give only one of {', '.join(given)}"
                code = ErrorCode.CONFIG_INVALID_VALUE
                problems.append(problem_at(doc, (*path, given[1]), code, text))
            elif given and given[0] != name:
                try:
                    update[name] = SecretStr(self._read_secret(name, env))
                except _SecretMissing as exc:
                    code = ErrorCode.SECRET_UNAVAILABLE
                    problems.append(problem_at(doc, (*path, exc.key), code, exc.text))
        return self.model_copy(update=update) if update else self

    def _read_secret(self, name: str, env: Mapping[str, str]) -> str:
        file_, var = getattr(self, f"{name}_file"), getattr(self, f"{name}_env")
        if file_ is not None:
            try:
                with Path(file_).open("rb") as f:
                    value = f.read(MAX_SECRET_BYTES).decode().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise _SecretMissing(f"{name}_file", f"cannot read {file_}: {reason}") from None
            if not value:
                raise _SecretMissing(f"{name}_file", f"{file_} is empty")
            return str(value)
        value = env.get(var, "").strip()
        if not value:
            raise _SecretMissing(f"{name}_env", f"environment variable {var} is not set or empty")
        return value


class _SecretMissing(Exception):
    def __init__(self, key: str, text: str) -> None:
        self.key, self.text = key, text


class DeviceSection(Section):
    """Who this device is: the id in MQTT topics and default user and stream ids, and a name."""

    id: OptId64 = ""
    name: Text = ""


class RoomSection(Section):
    """Which room server, app, credentials, room and user the daemon logs in with."""

    secrets: ClassVar[tuple[str, ...]] = ("token", "app_secret")
    server_url: Annotated[str, BeforeValidator(blank_if_none), AfterValidator(ws_url)] = ""
    app_id: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)] = "default"
    token: InlineSecret = None
    token_file: OptPath = None
    token_env: EnvName | None = None
    app_secret: InlineSecret = None
    app_secret_file: OptPath = None
    app_secret_env: EnvName | None = None
    room_id: OptId128 = ""
    user_id: OptId64 = ""
    user_name: Text = ""
    user_update: bool = True
    scenario: Scenario = Scenario.CALL
    token_ttl_s: Annotated[float, Field(ge=60, le=30 * 86400)] = 3600.0
    max_members: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class WhipTargetSection(Section):
    """An external WHIP endpoint the published stream is sent to as well."""

    secrets: ClassVar[tuple[str, ...]] = ("token",)
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
    token: InlineSecret = None
    token_file: OptPath = None
    token_env: EnvName | None = None


class PublishSection(Section):
    """The stream published after each login (unless disabled)."""

    enabled: bool = True
    stream_id: OptId128 = ""
    extra_info: ExtraInfo = ""
    max_viewers: Annotated[int, Field(ge=0, le=10_000)] = 0
    relay: Literal["p2p", "sfu", "auto"] | None = None
    p2p_max_viewers: Annotated[int, Field(ge=0, le=64)] | None = None
    targets: Annotated[list[WhipTargetSection], Field(max_length=8)] = []


def _publish(v: Any) -> Any:
    return {"enabled": v} if isinstance(v, bool) else defaults_if_none(v)


class AutoSection(Section):
    """What the daemon does by itself: log in at start, then publish and play."""

    login: bool = True
    publish: Annotated[PublishSection, BeforeValidator(_publish)] = Field(
        default_factory=PublishSection
    )
    play: PlaySpec = []
    play_video: bool = False


class VideoSection(Section):
    """The camera (or test pattern, or file) and how its video is encoded.

    Unset sizes, rate and bit rates take the scenario's defaults (room.scenario).
    """

    source: Annotated[
        Literal["auto", "picamera2", "v4l2", "testpattern", "file", "none"],
        BeforeValidator(off_is_none),
    ] = "auto"
    device: Text = ""
    width: Size | None = None
    height: Size | None = None
    fps: Annotated[float, Field(ge=1, le=120)] | None = None
    bitrate: Bitrate | None = None
    min_bitrate: Bitrate | None = None
    max_bitrate: Bitrate | None = None
    keyframe_interval_s: Annotated[float, Field(ge=0.1, le=60)] | None = None
    rotation: Literal[0, 90, 180, 270] = 0
    hflip: bool = False
    vflip: bool = False
    input_format: Literal["auto", "mjpeg", "yuyv", "h264"] = "auto"
    stall_timeout_s: Annotated[float, Field(ge=0, le=600)] = 5.0


class AudioSection(Section):
    """The microphone (or tone), the speaker, and how audio is encoded."""

    source: Annotated[Literal["auto", "alsa", "tone", "none"], BeforeValidator(off_is_none)] = (
        "auto"
    )
    capture_device: Annotated[str, Field(min_length=1, max_length=256)] = "default"
    playback_device: Annotated[str, Field(min_length=1, max_length=256)] = "default"
    sample_rate: Literal[8000, 12000, 16000, 24000, 48000] = 48_000
    channels: Literal[1, 2] = 1
    bitrate: Annotated[int, BeforeValidator(bit_rate), Field(ge=6_000, le=510_000)] = 32_000
    period_ms: Annotated[int, Field(ge=5, le=100)] = 20
    playback_buffer_ms: Annotated[int, Field(ge=20, le=5_000)] = 100
    echo_cancellation: Annotated[
        Literal["cancel", "half_duplex", "off"], BeforeValidator(echo_mode)
    ] = "cancel"
    echo_canceller: Literal["auto", "webrtc", "speexdsp"] = "auto"
    echo_tail_ms: Annotated[int, Field(ge=50, le=1_000)] = 200
    noise_suppression: bool = True
    auto_gain: bool = False
    speaker_volume: Annotated[int, Field(ge=0, le=100)] = 100
    speaker_muted: bool = False
    mic_gain_db: Annotated[float, Field(ge=-20, le=30)] = 0.0
    talkback: bool = True


class MqttTls(Section):
    """TLS to the broker; without ``ca_file`` the system's CAs verify it."""

    ca_file: OptFile = None
    cert_file: OptFile = None
    key_file: OptFile = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """A client context; a certificate or key that cannot be loaded raises
        TLS_CERTIFICATE_INVALID."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise EdgedError(ErrorCode.TLS_CERTIFICATE_INVALID, f"mqtt.tls: {exc}") from None
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _tls(v: Any) -> Any:
    return {} if v is True else None if v is False else v


class MqttSection(Section):
    """The MQTT control channel: broker, credentials, topics and Home Assistant discovery."""

    secrets: ClassVar[tuple[str, ...]] = ("password",)
    enabled: bool = True
    host: Host = "localhost"
    port: Port = 1883
    tls: Annotated[MqttTls | None, BeforeValidator(_tls)] = None
    username: Text = ""
    password: InlineSecret = None
    password_file: OptPath = None
    password_env: EnvName | None = None
    client_id: Annotated[str, BeforeValidator(blank_if_none), Field(max_length=128)] = ""
    base_topic: Topic = "edged"
    discovery: bool = True
    discovery_prefix: Topic = "homeassistant"
    protocol: Annotated[Literal["3.1.1", "5"], BeforeValidator(str)] = "5"
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    quality_interval_s: Annotated[float, Field(ge=1, le=3600)] = 3.0
    snapshot_interval_s: Annotated[float, Field(ge=0, le=86400)] = 60.0

    @property
    def protocol_version(self) -> int:
        """The protocol level on the wire: 5, or 4 for MQTT 3.1.1."""
        return 5 if self.protocol == "5" else 4


class IceServer(Section):
    """One STUN or TURN server."""

    secrets: ClassVar[tuple[str, ...]] = ("credential",)
    urls: Annotated[list[Annotated[str, AfterValidator(ice_url)]], BeforeValidator(ice_urls)]
    username: Text = ""
    credential: InlineSecret = None
    credential_file: OptPath = None
    credential_env: EnvName | None = None


class IceSection(Section):
    """ICE: STUN/TURN servers (none by default) and the host interfaces ICE may use."""

    servers: list[IceServer] = []
    interfaces: list[Annotated[str, Field(pattern=r"^[^\s/:]{1,15}$")]] = []


class ServerTls(Section):
    """TLS for the embedded room server (then clients use wss:// and https://)."""

    cert_file: OptFile
    key_file: OptFile


class SfuSection(Section):
    """The Janus servers the embedded room server relays streams through (docs/scaling.md)."""

    secrets: ClassVar[tuple[str, ...]] = ("api_secret",)
    urls: Annotated[
        list[Annotated[str, AfterValidator(ws_url)]], Field(min_length=1, max_length=16)
    ]
    api_secret: InlineSecret = None
    api_secret_file: OptPath = None
    api_secret_env: EnvName | None = None
    relay: Literal["sfu", "auto", "p2p"] = "sfu"
    p2p_max_viewers: Annotated[int, Field(ge=0, le=64)] = 4
    bitrate_cap: Bitrate = 4_000_000


class TurnSection(Section):
    """TURN servers whose shared secret the embedded room server holds: it mints each
    client time-limited credentials (docs/configuration.md, "TURN")."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    urls: Annotated[
        list[Annotated[str, AfterValidator(turn_url)]],
        BeforeValidator(ice_urls),
        Field(min_length=1, max_length=16),
    ]
    secret: InlineSecret = None
    secret_file: OptPath = None
    secret_env: EnvName | None = None
    min_ttl_s: Annotated[float, Field(ge=60, le=604800)] = 3600.0
    max_ttl_s: Annotated[float, Field(ge=60, le=604800)] = 86400.0


class ClusterSection(Section):
    """This embedded server as one node of several sharing ``server.store``
    (docs/scaling.md, "Several room-server nodes")."""

    secrets: ClassVar[tuple[str, ...]] = ("secret",)
    node_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    advertise_url: Annotated[str, Field(pattern=r"^https?://", max_length=256)] | None = None
    secret: InlineSecret = None
    secret_file: OptPath = None
    secret_env: EnvName | None = None


class ServerSection(Section):
    """The embedded room server: on by default when room.server_url is empty."""

    enabled: bool | None = None
    host: Host = "127.0.0.1"
    port: Port = 8790
    apps_file: OptPath = None
    dev_mode: bool = False
    heartbeat_interval_s: Seconds = 10.0
    heartbeat_timeout_s: Seconds = 30.0
    tls: ServerTls | None = None
    print_join_info: bool = False
    sfu: SfuSection | None = None
    turn: TurnSection | None = None
    store: Annotated[str, Field(pattern=r"^(memory|redis://.*|rediss://.*|unix://.*)$")] = "memory"
    cluster: ClusterSection | None = None
    trusted_proxies: Annotated[
        list[Annotated[str, AfterValidator(ip_network)]], Field(max_length=64)
    ] = []


class TimersSection(Section):
    """The engine's delays in seconds (EngineTimers)."""

    request_timeout_s: Seconds = 10.0
    connect_timeout_s: Seconds = 5.0
    retry_min_s: Seconds = 0.2
    retry_max_s: Seconds = 5.0
    reconnect_give_up_s: Seconds = 120.0
    play_retry_s: Seconds = 1.0
    keyframe_min_interval_s: Seconds = 0.5
    quality_interval_s: Seconds = 3.0
    token_renew_before_s: Seconds = 60.0


class LoggingSection(Section):
    """How much is logged, and whether to journald (auto: when started by systemd)."""

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(upper)
    ] = "INFO"
    journald: Literal["auto", True, False] = "auto"
