"""The board's intercom as the daemon runs it: made from the ``audio`` section, changed by
the MQTT commands, reported in the retained state.

One :class:`~edged.media.alsa.intercom.Intercom` lives as long as the daemon, between the
speaker every played stream is mixed into (:class:`.sinks.Speaker`) and the ALSA
microphone (:mod:`.source_choice`), so that a new engine (a reload) keeps what commands
set and the echo path the canceller learned. Echo cancellation is on by default: it acts
whenever the daemon both captures and plays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config.sections import AudioSection
from ..media.alsa.echo import EchoMode, EchoSettings
from ..media.alsa.intercom import AudioControls, Intercom, chosen_canceller

JsonDict = dict[str, Any]


def echo_settings(audio: AudioSection) -> EchoSettings:
    """The canceller's set-up from the ``audio`` section."""
    return EchoSettings(
        library=audio.echo_canceller,
        tail_ms=audio.echo_tail_ms,
        noise_suppression=audio.noise_suppression,
        auto_gain=audio.auto_gain,
    )


def audio_controls(audio: AudioSection) -> AudioControls:
    """The controls' starting values from the ``audio`` section."""
    return AudioControls(
        speaker_volume=audio.speaker_volume,
        speaker_muted=audio.speaker_muted,
        mic_gain_db=audio.mic_gain_db,
        echo_mode=EchoMode(audio.echo_cancellation),
    )


class DeviceAudio:
    """Owns the daemon's intercom; tells ``changed`` the new state after every change."""

    def __init__(self, audio: AudioSection, changed: Callable[[JsonDict], None]) -> None:
        self.intercom = Intercom(audio_controls(audio), echo_settings(audio))
        self.canceller = chosen_canceller(audio.echo_canceller)
        """The echo canceller's library, None when it is not installed."""
        self._changed = changed

    @property
    def controls(self) -> AudioControls:
        return self.intercom.controls

    def configure(self, audio: AudioSection) -> None:
        """A reloaded ``audio`` section: its controls and canceller settings apply now."""
        fresh = audio_controls(audio)
        self.canceller = chosen_canceller(audio.echo_canceller)
        self.update(
            speaker_volume=fresh.speaker_volume,
            speaker_muted=fresh.speaker_muted,
            mic_gain_db=fresh.mic_gain_db,
            echo_mode=fresh.echo_mode,
        )
        self.intercom.configure(echo_settings(audio))

    def update(self, **values: Any) -> JsonDict:
        """Set some controls (``speaker_volume=50`` ...); the new state."""
        for name, value in values.items():
            setattr(self.controls, name, value)
        state = self.state()
        self._changed(state)
        return state

    def state(self) -> JsonDict:
        """The ``audio`` object of the retained state."""
        c = self.controls
        return {
            "speaker_volume": c.speaker_volume,
            "speaker_muted": c.speaker_muted,
            "mic_gain_db": c.mic_gain_db,
            "echo_mode": str(c.echo_mode),
            "echo_canceller": self.canceller,
        }

    def close(self) -> None:
        self.intercom.close()
