"""Which tests need Janus, and where they may skip for want of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.testing.janus import installed


def _release() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("VERSION_CODENAME", "").strip('"')


requires_janus = pytest.mark.skipif(
    not installed() and _release() == "trixie",
    reason="Debian 13 has no janus package (Debian 12 and 14 have): these tests run in the "
    "host pass; on Debian 13 Janus runs on another machine (docs/scaling.md)",
)
"""Mark for tests that start Janus: skipped only where the release cannot have it; a
missing janus anywhere else fails the test (scripts/setup --test installs it)."""
