"""Media: sources, encoders, the encode-once fan-out, sinks, ALSA and aiortc's private
pieces; it knows nothing of rooms, the engine or the daemon.

The sub-packages, by role:

* :mod:`.sources`: what a published stream reads (test pattern, tone, V4L2, file,
  picamera2), the tap and mute between a source and its fan-out.
* :mod:`.encoders`: one encoder per stream (libx264, the board's V4L2 encoder, Opus).
* :mod:`.send`: the fan-out, its viewers, keyframe requests, RTP packing, UDP batching.
* :mod:`.aiortc`: every use of aiortc's private API, one module per piece.
* :mod:`.alsa`: the microphone and the speaker.
* :mod:`.sinks`: frame queue, recorder, snapshots, preview decoder, analysis.

Shared by several roles: :mod:`.h264` (Annex-B, NAL types, level 3.1, parameter sets),
:mod:`.frames` (plane views of frames), :mod:`.device` (device error codes and the retry
loop), :mod:`.clock` (monotonic pacing of synthetic sources and ALSA). :mod:`.inventory`
lists a machine's cameras and sound cards (``edged devices``).
"""
