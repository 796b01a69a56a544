"""The value types of configuration keys: ids, hosts, ports, rates, paths, secrets, topics.

Each is an ``Annotated`` type with the validators that turn what a YAML file may hold
("2M", "off", a relative path, an empty string) into one checked value, with a plain
message naming what is wrong. The sections (:mod:`.sections`) are built from these.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from ..protocol import StreamId

_ANY_ID = r"^[A-Za-z0-9_.\-]*$"
MAX_SECRET_BYTES = 64 * 1024


def _fail(kind: str, text: str) -> PydanticCustomError:
    return PydanticCustomError(f"cfg_{kind}", text)


def blank_if_none(v: Any) -> Any:
    return "" if v is None else v


def _none_if_empty(v: Any) -> Any:
    return None if v == "" else v


def defaults_if_none(v: Any) -> Any:
    """A section written with no value (``video:``) is the section with its defaults."""

    return {} if v is None else v


def off_is_none(v: Any) -> Any:
    return "none" if v is False else v


def echo_mode(v: Any) -> Any:
    """YAML's ``on``/``true`` mean ``cancel``, ``off``/``false`` mean ``off``."""
    return {True: "cancel", False: "off"}.get(v, v) if isinstance(v, bool) else v


def bit_rate(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", v)
    if not m:
        raise _fail("bitrate", "not a bit rate: give bits per second, e.g. 800000, 800k or 2.5M")
    return round(float(m[1]) * {"": 1, "k": 1e3, "m": 1e6}[m[2].lower()])


def _even(v: int) -> int:
    if v % 2:
        raise _fail("even", "must be an even number (the encoder needs even sizes)")
    return v


def _host(v: str) -> str:
    if not v or len(v) > 253 or any(c.isspace() or c in "/?#" for c in v):
        raise _fail("host", "must be a host name or an IP address")
    return v


def _topic(v: str) -> str:
    if not v or v.startswith(("/", "$")) or v.endswith("/") or "//" in v or set(v) & set("+#\0"):
        raise _fail("topic", "must be a topic prefix without wildcards or empty levels")
    return v


def ws_url(v: str) -> str:
    try:
        parts = urlsplit(v)
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
        parts.port  # noqa: B018 (a bad port raises)
    except ValueError:
        ok = False
    if v and not ok:
        raise _fail("url", "must be a ws:// or wss:// URL (ws://HOST:8790/ws), or empty")
    return v


def ip_network(v: str) -> str:
    try:
        ipaddress.ip_network(v.strip(), strict=False)
    except ValueError:
        raise _fail(
            "ip_network", "must be an IP address or network (10.0.0.5, 10.0.0.0/24)"
        ) from None
    return v


def ice_urls(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def ice_url(v: str) -> str:
    if not v.startswith(("stun:", "stuns:", "turn:", "turns:")):
        raise _fail("ice_url", "must start with stun:, stuns:, turn: or turns:")
    return v


def turn_url(v: str) -> str:
    if not v.startswith(("turn:", "turns:")):
        raise _fail("turn_url", "must start with turn: or turns:")
    return v


def _relative_to_file(v: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    return Path(base) / v if base and v is not None else v


def _existing(v: Path | None) -> Path | None:
    if v is not None and not v.is_file():
        raise PydanticCustomError("cfg_no_file", "no such file: {path}", {"path": str(v)})
    return v


def _play_kind(v: Any) -> str:
    return "all" if isinstance(v, str) else "list"


def _play(v: Any) -> Any:
    if v is None:
        return []
    if not isinstance(v, list) and v != "all":
        raise _fail("play", "must be all or a list of stream ids")
    return v


def upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


OptId64 = Annotated[str, BeforeValidator(blank_if_none), Field(max_length=64, pattern=_ANY_ID)]
OptId128 = Annotated[str, BeforeValidator(blank_if_none), Field(max_length=128, pattern=_ANY_ID)]
Text = Annotated[str, BeforeValidator(blank_if_none), Field(max_length=256)]
Host = Annotated[str, AfterValidator(_host)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=30 * 86400)]
Bitrate = Annotated[int, BeforeValidator(bit_rate), Field(ge=1_000, le=100_000_000)]
Size = Annotated[int, Field(ge=16, le=4096), AfterValidator(_even)]
Topic = Annotated[str, AfterValidator(_topic)]
EnvName = Annotated[str, Field(max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
OptPath = Annotated[Path | None, BeforeValidator(_none_if_empty), AfterValidator(_relative_to_file)]
InlineSecret = Annotated[SecretStr | None, BeforeValidator(_none_if_empty)]
OptFile = Annotated[OptPath, AfterValidator(_existing)]
PlaySpec = Annotated[
    Annotated[Literal["all"], Tag("all")] | Annotated[list[StreamId], Tag("list")],
    Discriminator(_play_kind),
    BeforeValidator(_play),
]
