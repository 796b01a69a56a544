"""The MQTT command schemas (one model of arguments per command), the parser of a
payload and the response.

A command is a JSON object ``{"command": "<name>", ...arguments, "request_id": "..."}``.
Unknown commands, unknown arguments and wrong types are refused with their own codes and
change nothing. Which command takes which model, and which handler runs it, is the one
table :data:`edged.daemon.actions.COMMANDS`; ``docs/mqtt.md`` documents every command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import EdgedError, ErrorCode
from ..protocol import ID_PATTERN

MAX_COMMAND_BYTES = 64 * 1024
OptId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)] | None
StreamId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


class Args(BaseModel):
    """The arguments of one command: nothing unknown, nothing changed after parsing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginRoomArgs(Args):
    """Log into a room; every argument defaults to the configuration's."""

    room_id: OptId = None
    user_id: OptId = None
    user_name: Annotated[str, Field(max_length=256)] | None = None
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


class NoArgs(Args):
    pass


class StartPublishingArgs(Args):
    stream_id: OptId = None
    extra_info: Annotated[str, Field(max_length=1024)] | None = None
    max_viewers: Annotated[int, Field(ge=0, le=10_000)] | None = None


class StopPublishingArgs(Args):
    stream_id: OptId = None


class StartPlayingArgs(Args):
    stream_id: StreamId
    video: bool | None = None


class StopPlayingArgs(Args):
    stream_id: StreamId


class MuteArgs(Args):
    muted: bool = True


class SpeakerVolumeArgs(Args):
    volume: Annotated[int, Field(ge=0, le=100)]


class MicGainArgs(Args):
    gain_db: Annotated[float, Field(ge=-20, le=30)]


class EchoModeArgs(Args):
    mode: Literal["cancel", "half_duplex", "off"]


class SetVideoConfigArgs(Args):
    width: Annotated[int, Field(ge=16, le=4096)] | None = None
    height: Annotated[int, Field(ge=16, le=4096)] | None = None
    fps: Annotated[float, Field(gt=0, le=120)] | None = None
    bitrate: Annotated[int, Field(ge=10_000, le=50_000_000)] | None = None


class RenewTokenArgs(Args):
    token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


class ViewTokenArgs(Args):
    """A play-only token for the device's stream (default: the one it publishes)."""

    stream_id: StreamId | None = None
    ttl_s: Annotated[float, Field(ge=10, le=3600)] = 300.0


class Command(BaseModel):
    """A parsed command: its name, validated arguments and request id."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    args: Args
    request_id: str | None = None


class CommandError(EdgedError):
    """A refused command; carries what could be read of it for the response."""

    def __init__(self, code: ErrorCode, message: str, name: str | None, request_id: str | None):
        super().__init__(code, message)
        self.name = name
        self.request_id = request_id


def parse_command(payload: bytes | str, schemas: Mapping[str, type[Args]]) -> Command:
    """Validate one command payload against the schema of its name (``schemas``), raising
    :class:`CommandError` (never anything else)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(
            ErrorCode.COMMAND_PAYLOAD_TOO_LARGE,
            f"payload over {MAX_COMMAND_BYTES} bytes",
            None,
            None,
        )
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        raise CommandError(ErrorCode.COMMAND_MALFORMED, "payload is not JSON", None, None) from None
    if not isinstance(obj, dict):
        raise CommandError(ErrorCode.COMMAND_MALFORMED, "payload is not a JSON object", None, None)
    rid = obj.pop("request_id", None)
    request_id = (
        str(rid)[:128] if isinstance(rid, str | int) and not isinstance(rid, bool) else None
    )
    name = obj.pop("command", None)
    if not isinstance(name, str):
        raise CommandError(
            ErrorCode.COMMAND_MALFORMED, "missing string field 'command'", None, request_id
        )
    model = schemas.get(name)
    if model is None:
        raise CommandError(ErrorCode.COMMAND_UNKNOWN, "unknown command", name[:64], request_id)
    try:
        args = model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        raise CommandError(
            ErrorCode.COMMAND_INVALID_ARGUMENTS, f"{where}: {first['msg']}", name, request_id
        ) from None
    return Command(name=name, args=args, request_id=request_id)


def response(
    command: str | None,
    request_id: str | None,
    *,
    result: Any = None,
    error: EdgedError | None = None,
) -> dict[str, Any]:
    """The ``command/response`` payload."""
    body: dict[str, Any] = {"request_id": request_id, "command": command, "ok": error is None}
    if error is not None:
        body["error"] = {"code": int(error.code), "message": error.message}
    elif result is not None:
        body["result"] = result
    return body
