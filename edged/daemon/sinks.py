"""Where the daemon sends media it does not publish: the speaker, snapshots.

:class:`Speaker` owns the ALSA output every played stream is mixed into;
:class:`Snapshots` makes the JPEG of the published video and hands it to the retained
``snapshot`` topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.engine import Engine
from ..errors import EdgedError, ErrorCode
from ..media.sinks.snapshot import jpeg_from_frame

if TYPE_CHECKING:
    from ..config.sections import AudioSection
    from ..media.alsa.intercom import Intercom
    from ..media.alsa.playback import AlsaPlaybackSink

log = logging.getLogger("edged.daemon")


class Speaker:
    """Owns the shared speaker: every played stream mixed into one ALSA device, opened on
    first use with the audio configuration of that moment (``audio``), its volume, mute
    and echo reference through the board's ``intercom``."""

    def __init__(self, audio: Callable[[], AudioSection], intercom: Intercom | None = None) -> None:
        self._audio = audio
        self._intercom = intercom
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
            self._sink = AlsaPlaybackSink(
                audio.playback_device,
                buffer_ms=audio.playback_buffer_ms,
                intercom=self._intercom,
            )
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
    source = engine.snapshot_source()
    if source is None:
        return None
    if source.frame is not None:
        return await asyncio.to_thread(jpeg_from_frame, source.frame)
    if source.capture_jpeg is not None:  # a camera's low-resolution stream
        return await asyncio.to_thread(source.capture_jpeg)
    return None


class Snapshots:
    """Makes a JPEG of the engine of the moment's published video (``engine``) and gives
    it to ``publish`` (the retained ``snapshot`` topic, when there is a broker)."""

    def __init__(self, engine: Callable[[], Engine], publish: Callable[[bytes], None]) -> None:
        self._engine = engine
        self._publish = publish

    async def take(self) -> int:
        """Make and publish one now; its size, or SNAPSHOT_FAILED without a picture."""
        jpeg = await snapshot_jpeg(self._engine())
        if jpeg is None:
            raise EdgedError(ErrorCode.SNAPSHOT_FAILED)
        self._publish(jpeg)
        return len(jpeg)
