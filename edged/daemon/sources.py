"""The daemon's choice of capture sources, from the configuration."""

from __future__ import annotations

import importlib
import logging

from ..config import Config
from ..engine.config import EngineProfile

log = logging.getLogger("edged.daemon")


def apply_sources(profile: EngineProfile, config: Config) -> None:
    """Set the profile's video and audio source factories for ``config``.

    The test pattern and the tone are the engine's defaults; cameras and sound cards
    come from :mod:`edged.media.sources` when it can serve the configured kind.
    """
    try:
        sources = importlib.import_module("edged.media.sources")
    except ImportError:
        if config.video.source not in ("testpattern", "none", "auto"):
            log.warning("video source %s unavailable: using the test pattern", config.video.source)
        return
    sources.apply_to_profile(profile, config)
