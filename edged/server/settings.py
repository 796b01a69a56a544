"""The room server's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import MAX_MESSAGE_BYTES
from .cluster import ClusterSettings
from .forwarded import Network
from .turn import TurnSettings


@dataclass(slots=True)
class Limits:
    """Abuse limits: every one bounds memory or CPU a client can make the server spend."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_connections: int = 20_000
    max_connections_per_ip: int = 1_000
    messages_per_s: float = 50.0
    message_burst: float = 100.0
    ip_messages_per_s: float = 2_000.0
    ip_message_burst: float = 4_000.0
    ip_connects_per_s: float = 200.0
    ip_connect_burst: float = 400.0
    outbox_limit: int = 512
    max_streams_per_session: int = 8
    max_plays_per_session: int = 32
    default_max_members: int = 1_000
    login_timeout_s: float = 10.0  # a socket must log in (or resume) within this


RELAY_POLICIES = ("p2p", "sfu", "auto")


@dataclass(slots=True)
class SfuSettings:
    """The Janus servers the room server relays streams through, and when it does.

    ``relay``: ``p2p`` (never), ``sfu`` (every viewer through Janus) or ``auto`` (the
    first ``p2p_max_viewers`` viewers of a stream peer to peer, every later one through
    Janus). ``bitrate_cap`` (bit/s) is the VideoRoom's, which Janus announces to the
    publisher by REMB.
    """

    urls: list[str] = field(default_factory=list)
    api_secret: str | None = field(default=None, repr=False)
    relay: str = "sfu"
    p2p_max_viewers: int = 4
    bitrate_cap: int = 4_000_000

    def __post_init__(self) -> None:
        if self.relay not in RELAY_POLICIES:
            raise ValueError(f"relay must be one of {', '.join(RELAY_POLICIES)}: {self.relay!r}")


@dataclass(slots=True)
class ServerSettings:
    """Everything the room server needs: apps, timers, limits and ICE servers."""

    apps: dict[str, str] = field(default_factory=dict, repr=False)  # app id -> secret
    host: str = "127.0.0.1"
    port: int = 8790
    dev_mode: bool = False
    heartbeat_interval_s: float = 10.0
    heartbeat_timeout_s: float = 30.0
    token_warning_s: float = 30.0
    sweep_interval_s: float = 1.0
    ice_servers: list[dict[str, object]] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    cert_file: str | None = None  # HTTPS (and wss://) when set, with key_file
    key_file: str | None = None
    sfu: SfuSettings | None = None  # streams relayed through Janus when set
    turn: TurnSettings | None = None  # TURN credentials minted for each client when set
    cluster: ClusterSettings | None = None  # one node of several sharing Redis when set
    # Proxies whose X-Forwarded-For names the client (edged.server.forwarded)
    trusted_proxies: tuple[Network, ...] = ()
