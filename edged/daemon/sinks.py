"""Where the daemon sends media it does not publish: speaker, snapshots."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..media.snapshot import jpeg_from_frame

if TYPE_CHECKING:
    from .service import Daemon

log = logging.getLogger("edged.daemon")


def player_sink(daemon: Daemon, stream_id: str) -> Any:
    """A way into the shared speaker (every played stream mixed into one ALSA device) when
    pyalsaaudio is there, else None (the stream is still received, decoded and counted)."""
    from ..media.alsa import alsa_available

    if not alsa_available():
        return None
    if daemon.speaker is None:
        from ..media.alsa_playback import AlsaPlaybackSink

        audio = daemon.config.audio
        daemon.speaker = AlsaPlaybackSink(audio.playback_device, buffer_ms=audio.playback_buffer_ms)
        log.info("playing received audio on ALSA device %s", audio.playback_device)
    return daemon.speaker.input()


def snapshot_jpeg(daemon: Daemon) -> bytes | None:
    """A JPEG of the latest captured frame of the first published stream."""
    room = daemon.engine.room
    if room is None:
        return None
    for publisher in room.publishers.values():
        tap = publisher.video_tap
        if tap is None:
            continue
        if tap.last_frame is not None:
            return jpeg_from_frame(tap.last_frame)
        own = getattr(tap.source, "snapshot_jpeg", None)  # a camera's low-resolution stream
        if own is not None:
            jpeg: bytes = own()
            return jpeg
    return None
