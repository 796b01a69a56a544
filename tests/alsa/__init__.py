"""ALSA test helpers: PCMs defined in the tests' own ALSA configuration, a real-time tone
feeder for the FIFO microphone, and a stand-in for pyalsaaudio."""
