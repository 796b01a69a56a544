"""edged: a headless participant of video-call rooms for Debian boards."""

__version__ = "0.1.0"
