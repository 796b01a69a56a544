"""Structured logging: one event name plus key=value fields per line.

Fields also travel in the record's ``edged_fields`` attribute so that the journald
handler can send them as journal fields. Callers pass only fields that are safe to
log: tokens and secrets are never passed here.
"""

from __future__ import annotations

import logging
from typing import Any


def _format_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as ``event key=value ...``."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{k}={_format_value(v)}" for k, v in fields.items() if v is not None)
    logger.log(
        level,
        "%s %s",
        event,
        text,
        extra={"edged_fields": fields, "edged_event": event},
        stacklevel=2,  # the caller's file and line, not this function's
    )


def setup_plain_logging(level: str | int = "INFO") -> None:
    """Log to stderr with a timestamp, level and logger name."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
