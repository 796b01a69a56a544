"""Every private piece of aiortc edged relies on, checked at once.

Each module of :mod:`edged.media.aiortc` lists what it relies on beside the code that
uses it (its ``REQUIREMENTS``); :func:`verify` runs them all and raises
:class:`~edged.media.aiortc.checks.AiortcInternalsError` naming the aiortc version and
what is missing or changed.
"""

from __future__ import annotations

from . import codec_choice, direct_sender, packers, receivers, sender_hook, sender_reports
from .checks import AIORTC_VERSION, AiortcInternalsError, Checks, run_checks

_ALL: Checks = (
    direct_sender.DIRECT_REQUIREMENTS
    | sender_hook.REQUIREMENTS
    | packers.REQUIREMENTS
    | sender_reports.REQUIREMENTS
    | receivers.REQUIREMENTS
    | codec_choice.REQUIREMENTS
)

REQUIREMENTS: tuple[str, ...] = tuple(_ALL)
"""The names of everything :func:`verify` checks."""


def problems() -> list[str]:
    """Every private piece that is missing or changed, as readable sentences."""
    return run_checks(_ALL)


def verify() -> None:
    """Raise :class:`AiortcInternalsError` unless every private piece used is present."""
    found = problems()
    if found:
        lines = "\n".join(f"  - {p}" for p in found)
        raise AiortcInternalsError(
            f"aiortc {AIORTC_VERSION} lacks private API that edged.media relies on:\n{lines}\n"
            "Update the module of edged/media/aiortc/ that names it for this aiortc release."
        )
