"""ALSA: the microphone and the speaker.

* :mod:`.pcm`: what capture and playback share: the PCM API, device errors, pacing, the
  thread that owns a PCM.
* :mod:`.capture`: the microphone as a live audio track.
* :mod:`.playback`: the speaker: played streams mixed onto one playback device.
* :mod:`.intercom`: between the two: speaker volume and mute, microphone gain, the echo
  mode; :mod:`.echo` (the canceller interface and the reference line), :mod:`.delay`
  (the echo delay no device reports), :mod:`.speex` (speexdsp's canceller, via ctypes),
  :mod:`.webrtc` (WebRTC's AEC3, via PipeWire's plugin and ctypes).
"""
