"""Where the daemon sends media it does not publish: the speaker, snapshots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.engine import Engine
from ..media.sinks.snapshot import jpeg_from_frame

if TYPE_CHECKING:
    from ..config.sections import AudioSection
    from ..media.alsa.playback import AlsaPlaybackSink

log = logging.getLogger("edged.daemon")


class Speaker:
    """Owns the shared speaker: every played stream mixed into one ALSA device, opened on
    first use with the audio configuration of that moment (``audio``)."""

    def __init__(self, audio: Callable[[], AudioSection]) -> None:
        self._audio = audio
        self._sink: AlsaPlaybackSink | None = None

    def input(self) -> Any:
        """A way into the speaker when pyalsaaudio is there, else None (the stream is still
        received, decoded and counted)."""
        from ..media.alsa.pcm import alsa_available

        if not alsa_available():
            return None
        if self._sink is None:
            from ..media.alsa.playback import AlsaPlaybackSink

            audio = self._audio()
            self._sink = AlsaPlaybackSink(audio.playback_device, buffer_ms=audio.playback_buffer_ms)
            log.info("playing received audio on ALSA device %s", audio.playback_device)
        return self._sink.input()

    async def close(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            await sink.close()


async def snapshot_jpeg(engine: Engine) -> bytes | None:
    """A JPEG of the latest captured frame of the first published stream, or None.

    The frame is found on the event loop; scaling and encoding it (or a camera's capture
    of its low-resolution stream, which waits for a frame) run in a worker thread, so the
    fan-out on the loop is never held up by a snapshot.
    """
    room = engine.room
    if room is None:
        return None
    for publisher in room.publishers.values():
        tap = publisher.video_tap
        if tap is None:
            continue
        if tap.last_frame is not None:
            return await asyncio.to_thread(jpeg_from_frame, tap.last_frame)
        if tap.capabilities.snapshot:  # a camera's low-resolution stream
            jpeg: bytes = await asyncio.to_thread(tap.snapshot_jpeg)
            return jpeg
    return None
