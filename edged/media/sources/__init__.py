"""Sources: what a published stream reads, as aiortc tracks (frames, or H.264 packets).

* :mod:`.base`: what every video source is made for (:class:`~.base.VideoSettings`).
* :mod:`.tap` and :mod:`.mute`: between a source and its fan-out: counts, observers, mute
  (black pictures and silence, or a black IDR for a pass-through H.264 stream).
* Synthetic: :mod:`.testpattern` (with its :mod:`.timecode`), :mod:`.tone`.
* Capture through PyAV: :mod:`.v4l2` (``CaptureTrack``: a V4L2 camera, a lavfi source, a
  file) with what it opens (:mod:`.capture_input`), its reader thread
  (:mod:`.capture_reader`), :mod:`.orientation`, :mod:`.timeline` and :mod:`.watchdog`;
  :mod:`.file` plays a media file through it, looped.
* :mod:`.picamera2`: a Raspberry Pi camera and its hardware H.264 encoder.

The microphone is in :mod:`edged.media.alsa`.
"""
