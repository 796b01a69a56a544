"""Sinks: what consumes frames and access units, published or played.

* :mod:`.frame_queue`: a track fed frame by frame, for a sink that reads a track.
* :mod:`.recorder`: a stream written to ``.mkv`` / ``.mp4``.
* :mod:`.snapshot`: JPEGs from the latest frame or H.264 keyframe, on demand.
* :mod:`.preview_decoder`: pass-through H.264 decoded for a local preview only.
* :mod:`.analysis`: time codes and tones measured in received tracks (tests, benchmarks).
"""
