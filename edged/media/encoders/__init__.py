"""Encoders: one frame in, access units out, one per published stream.

* :mod:`.base`: the :class:`~.base.PacketEncoder` protocol a fan-out encodes with.
* :mod:`.libx264`: :class:`~.libx264.H264Encoder` and its :class:`~.libx264.H264Settings`.
* :mod:`.v4l2m2m`: the board's hardware H.264 encoder, and which of the two a source gets.
* :mod:`.opus`: the audio fan-out's Opus encoder.
"""
