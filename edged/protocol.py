"""The room signaling protocol: every message, one schema for client and server.

Messages are JSON objects with a ``type`` field, sent as WebSocket text frames on
``/ws``. A client message with an ``id`` gets a ``reply`` with the same ``id``;
without an ``id`` it gets a reply only when it fails. Messages the server sends
within a session carry ``seq`` (1, 2, ...) so that a resumed session can be
replayed what it missed. ``docs/protocol.md`` is the prose version of this module.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import EdgedError, ErrorCode

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024

ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"
RoomId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
UserId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
StreamId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
UserName = Annotated[str, Field(max_length=256)]
ExtraInfo = Annotated[str, Field(max_length=1024)]
RoomText = Annotated[str, Field(min_length=1, max_length=1024)]
LinkId = Annotated[str, Field(min_length=1, max_length=64)]
RequestId = Annotated[int, Field(ge=0, le=2**53)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- shared records ---------------------------------------------------------------


class UserInfo(_Message):
    user_id: UserId
    user_name: UserName = ""


class StreamInfo(_Message):
    stream_id: StreamId
    user: UserInfo
    extra_info: ExtraInfo = ""
    video: bool = True
    audio: bool = True


class SessionDescription(_Message):
    type: Literal["offer", "answer"]
    sdp: Annotated[str, Field(max_length=60_000)]


class IceCandidate(_Message):
    """A trickled candidate as browsers give it; an empty ``candidate`` ends gathering."""

    candidate: Annotated[str, Field(max_length=1024)]
    sdpMid: str | None = None
    sdpMLineIndex: int | None = None


class IceServer(_Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class ErrorBody(_Message):
    code: int
    message: str


# ---- client -> server -------------------------------------------------------------


class _Request(_Message):
    id: RequestId | None = None


class Login(_Request):
    type: Literal["login"] = "login"
    version: int = PROTOCOL_VERSION
    app_id: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
    room_id: RoomId
    user_id: UserId
    user_name: UserName = ""
    token: Annotated[str, Field(max_length=4096)] | None = None
    user_update: bool = False
    max_members: Annotated[int, Field(ge=1, le=100_000)] | None = None


class Resume(_Request):
    type: Literal["resume"] = "resume"
    version: int = PROTOCOL_VERSION
    resume_token: Annotated[str, Field(min_length=1, max_length=400)]
    last_seq: Annotated[int, Field(ge=0)]


class Logout(_Request):
    type: Literal["logout"] = "logout"


class Heartbeat(_Request):
    type: Literal["heartbeat"] = "heartbeat"
    ack: Annotated[int, Field(ge=0)] | None = None


class Publish(_Request):
    type: Literal["publish"] = "publish"
    stream_id: StreamId
    extra_info: ExtraInfo = ""
    video: bool = True
    audio: bool = True
    max_viewers: Annotated[int, Field(ge=0, le=10_000)] = 0
    relay: Literal["p2p", "sfu", "auto"] | None = None  # None: the server's policy
    p2p_max_viewers: Annotated[int, Field(ge=0, le=64)] | None = None


class Unpublish(_Request):
    type: Literal["unpublish"] = "unpublish"
    stream_id: StreamId


class SetStreamExtraInfo(_Request):
    type: Literal["set_stream_extra_info"] = "set_stream_extra_info"
    stream_id: StreamId
    extra_info: ExtraInfo


class Play(_Request):
    type: Literal["play"] = "play"
    stream_id: StreamId
    description: SessionDescription | None = None  # the viewer's own offer (never relayed)


class StopPlay(_Request):
    type: Literal["stop_play"] = "stop_play"
    stream_id: StreamId


class Signal(_Request):
    """An SDP or ICE candidate for the other end of a media link (both directions)."""

    type: Literal["signal"] = "signal"
    link_id: LinkId
    stream_id: StreamId | None = None
    description: SessionDescription | None = None
    candidate: IceCandidate | None = None


class Broadcast(_Request):
    type: Literal["broadcast"] = "broadcast"
    message: RoomText


class CustomCommand(_Request):
    type: Literal["custom_command"] = "custom_command"
    to: Annotated[list[UserId], Field(max_length=100)] = []
    command: RoomText


class RenewToken(_Request):
    type: Literal["renew_token"] = "renew_token"
    token: Annotated[str, Field(min_length=1, max_length=4096)]


ClientMessage = Annotated[
    Login
    | Resume
    | Logout
    | Heartbeat
    | Publish
    | Unpublish
    | SetStreamExtraInfo
    | Play
    | StopPlay
    | Signal
    | Broadcast
    | CustomCommand
    | RenewToken,
    Field(discriminator="type"),
]
CLIENT_TYPES = frozenset(
    m.model_fields["type"].default for m in get_args(get_args(ClientMessage)[0])
)
"""The ``type`` of every client message, read from the union above."""


# ---- server -> client -------------------------------------------------------------


class _Push(_Message):
    seq: int | None = None


class Reply(_Push):
    type: Literal["reply"] = "reply"
    id: RequestId | None = None
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class LoginResult(_Message):
    """The ``result`` of a successful login or resume."""

    session_id: str
    resume_token: str
    room_id: RoomId
    user: UserInfo
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    token_expires_at: float | None = None
    ice_servers: list[IceServer] = []
    server_version: str = ""
    resumed: bool = False
    users: list[UserInfo] = []  # the room's other users (when user_update was asked)
    streams: list[StreamInfo] = []  # the room's streams


class RoomUserUpdate(_Push):
    type: Literal["room_user_update"] = "room_user_update"
    room_id: RoomId
    update_type: Literal[0, 1]
    users: list[UserInfo]


class RoomStreamUpdate(_Push):
    type: Literal["room_stream_update"] = "room_stream_update"
    room_id: RoomId
    update_type: Literal[0, 1]
    streams: list[StreamInfo]
    reason: str | None = None


class StreamExtraInfoUpdate(_Push):
    type: Literal["stream_extra_info_update"] = "stream_extra_info_update"
    room_id: RoomId
    streams: list[StreamInfo]


class LinkOpen(_Push):
    """To a publisher: offer ``link_id`` to a viewer or the SFU, or answer its ``description``."""

    type: Literal["link_open"] = "link_open"
    link_id: LinkId
    stream_id: StreamId
    user: UserInfo
    relayed: bool = False
    description: SessionDescription | None = None


class LinkClosed(_Push):
    type: Literal["link_closed"] = "link_closed"
    link_id: LinkId
    stream_id: StreamId
    reason: str


class SignalRelay(_Push):
    """A :class:`Signal` relayed to the other end of the link, with its sender."""

    type: Literal["signal"] = "signal"
    link_id: LinkId
    stream_id: StreamId
    user: UserInfo
    description: SessionDescription | None = None
    candidate: IceCandidate | None = None


class BroadcastMessage(_Push):
    type: Literal["broadcast"] = "broadcast"
    room_id: RoomId
    user: UserInfo
    message: str
    message_id: int


class CustomCommandMessage(_Push):
    type: Literal["custom_command"] = "custom_command"
    room_id: RoomId
    user: UserInfo
    command: str


class TokenWillExpire(_Push):
    type: Literal["token_will_expire"] = "token_will_expire"
    room_id: RoomId
    remaining_s: float


class KickedOut(_Push):
    type: Literal["kicked_out"] = "kicked_out"
    room_id: RoomId
    code: int
    message: str


ServerMessage = Annotated[
    Reply
    | RoomUserUpdate
    | RoomStreamUpdate
    | StreamExtraInfoUpdate
    | LinkOpen
    | LinkClosed
    | SignalRelay
    | BroadcastMessage
    | CustomCommandMessage
    | TokenWillExpire
    | KickedOut,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)

# A schema error on one of these fields gets the field's own code.
_FIELD_CODES: dict[str, ErrorCode] = {
    "app_id": ErrorCode.APP_ID_INVALID,
    "room_id": ErrorCode.ROOM_ID_INVALID,
    "user_id": ErrorCode.USER_ID_INVALID,
    "user_name": ErrorCode.USER_NAME_INVALID,
    "stream_id": ErrorCode.STREAM_ID_INVALID,
    "extra_info": ErrorCode.STREAM_EXTRA_INFO_TOO_LONG,
    "message": ErrorCode.ROOM_MESSAGE_INVALID,
    "command": ErrorCode.ROOM_MESSAGE_INVALID,
}


class ProtocolError(EdgedError):
    """A message that could not be decoded; ``request_id`` is its ``id`` if readable."""

    def __init__(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id


def room_url(url: str, app_id: str, room_id: str) -> str:
    """The server's WebSocket URL with the room it is for as ``?app=…&room=…``: the server
    ignores them; a load balancer in front of several nodes can hash them, so that a
    room's members reach the node that runs it (docs/scaling.md)."""
    from yarl import URL

    return str(URL(url).update_query(app=app_id, room=room_id))


def _request_id(obj: Any) -> int | None:
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid <= 2**53:
            return rid
    return None


def decode_client(text: str | bytes) -> ClientMessage:
    """Parse and validate one client message, raising :class:`ProtocolError`.

    The error names the first problem without echoing values (a message may hold a
    token).
    """
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "not valid JSON") from None
    rid = _request_id(obj)
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "message is not a JSON object")
    mtype = obj.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(ErrorCode.MALFORMED_MESSAGE, "missing string field 'type'", rid)
    if mtype not in CLIENT_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, "unknown message type", rid)
    try:
        return _client_adapter.validate_python(obj)
    except ValidationError as exc:
        raise _schema_error(exc, rid) from None


def _schema_error(exc: ValidationError, rid: int | None) -> ProtocolError:
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(p) for p in first["loc"][1:]]  # drop the union tag
    field = loc[0] if loc else ""
    code = _FIELD_CODES.get(field, ErrorCode.MALFORMED_MESSAGE)
    where = ".".join(loc) or "message"
    return ProtocolError(code, f"{where}: {first['msg']}", rid)


def decode_server(text: str | bytes) -> ServerMessage:
    """Parse and validate one server message (used by clients)."""
    return _server_adapter.validate_json(text)


def encode(message: BaseModel) -> str:
    """Serialize a message to its JSON text, leaving out unset optional fields."""
    return message.model_dump_json(exclude_none=True)


def encode_ok_reply(request_id: int | None, result: BaseModel) -> str:
    """The text of ``Reply(id=request_id, ok=True, result=<result's fields>)``.

    The same text as encoding that :class:`Reply`, without turning ``result`` into a
    dict and validating it again: the result is serialized once, straight to JSON.
    """
    rid = "" if request_id is None else f'"id":{int(request_id)},'
    return f'{{"type":"reply",{rid}"ok":true,"result":{encode(result)}}}'
