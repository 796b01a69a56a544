"""A Raspberry Pi camera through picamera2: the source (:mod:`.source`), how the camera and
its encoder are set up (:mod:`.setup`), and what the encoder hands out turned into what
the fan-out takes (:mod:`.output`).

picamera2's own parts make the pipeline: ``Picamera2`` (size, rate, flips; set up by
:class:`~edged.media.sources.picamera2.setup.CameraSetup`) -> its ``H264Encoder`` (the V4L2
encoder, ``/dev/video11``) -> an ``Output`` subclass
(:mod:`edged.media.sources.picamera2.output`), whose ``outputframe()`` gets each Annex-B access
unit in the encoder's thread, stamped in microseconds -> an asyncio queue ->
:meth:`~.source.Picamera2VideoTrack.recv` -> ``av.Packet`` (pts in 1/90000) that
:class:`~edged.media.send.fanout.EncodedVideoFanout` sends to every viewer: no decode, no
re-encode. Without a hardware encoder (Pi 5, or no ``/dev/video11``) picamera2's plain
``Encoder`` hands out raw YUV420 buffers instead, the track returns ``av.VideoFrame`` and
the fan-out's libx264 encodes them once (:attr:`~.source.Picamera2VideoTrack.hardware_encode`
False).
"""
