"""A Raspberry Pi camera through picamera2: the source (:mod:`.source`), how the camera and
its encoder are set up (:mod:`.setup`), and what the encoder hands out turned into what
the fan-out takes (:mod:`.output`)."""
