"""The camera (picamera2 0.3.38's ``Picamera2`` API, the part edged uses).

A sensor thread renders edged's time-code test pattern (so a receiver can read which
frame it got and when it was made) at the configured size, rate and flips, and hands
every completed request to the running encoders, as picamera2's event loop does.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import libcamera
import numpy as np

from edged.media.frames import plane_view
from edged.media.sources.testpattern import TestPatternRenderer

from ._standin import BOARD
from .encoders.encoder import Encoder
from .platform import Platform, get_platform
from .request import CompletedRequest

SENSOR_SIZE = (4608, 2592)
SENSOR_MIN_FRAME_DURATION_US = 8333
FORMATS = ("YUV420",)
"""What the stand-in renders (the real camera also gives RGB formats)."""


class Picamera2:
    """One camera: configuration, start/stop, encoders, captures."""

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        """Id, Model, Location, Rotation and Num of every attached camera."""
        return [dict(c) for c in BOARD.cameras]

    def __init__(
        self,
        camera_num: int = 0,
        verbose_console: Any = None,
        tuning: Any = None,
        allocator: Any = None,
    ) -> None:
        with BOARD.lock:
            if camera_num >= len(BOARD.cameras):
                raise IndexError("list index out of range")
            if camera_num in BOARD.open_cameras:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            BOARD.open_cameras.add(camera_num)
        self.camera_idx = camera_num
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] = {}
        self.camera_ctrl_info = {
            "FrameDurationLimits": (None, SimpleNamespace(min=SENSOR_MIN_FRAME_DURATION_US))
        }
        self._encoders: set[Encoder] = set()
        self.lock = threading.Lock()
        self._frames = threading.Condition()
        self._latest: CompletedRequest | None = None
        self._sensor: threading.Thread | None = None

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encoders(self) -> set[Encoder]:
        return self._encoders

    @staticmethod
    def align_stream(stream_config: dict[str, Any], optimal: bool = True) -> None:
        align = 2 if not optimal else 64 if get_platform() == Platform.VC4 else 128
        w, h = stream_config["size"]
        stream_config["size"] = (w - w % align, h - h % 2)

    def create_video_configuration(
        self,
        main: dict[str, Any] = {},  # noqa: B006 - picamera2's signature
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] = {},  # noqa: B006
        transform: libcamera.Transform = libcamera.Transform(),  # noqa: B008
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] = {},  # noqa: B006
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] = {},  # noqa: B006
        use_case: str = "video",
    ) -> dict[str, Any]:
        """A configuration for video recording (picamera2's defaults: 1280x720 XBGR8888)."""
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True} | main
        self.align_stream(main, optimal=False)
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], "preserve_ar": False} | lores
            self.align_stream(lores, optimal=False)
        defaults = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": defaults | controls,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any] | None = None) -> None:
        """Validate and apply a configuration; adds each stream's ``stride`` and ``framesize``."""
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None:
            raise RuntimeError("the stand-in has no preview configuration")
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in camera_config.items()}
        transform = config["transform"]
        if transform.transpose:
            raise RuntimeError("Failed to configure camera: transform not supported")
        main_w, main_h = config["main"]["size"]
        if not (64 <= main_w <= SENSOR_SIZE[0] and 64 <= main_h <= SENSOR_SIZE[1]):
            raise RuntimeError(f"main stream size {main_w}x{main_h} not supported")
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is None:
                continue
            if stream["format"] not in FORMATS:
                raise RuntimeError(f"stand-in renders {FORMATS}, not {stream['format']}")
            w, h = stream["size"]
            if name == "lores" and (w > main_w or h > main_h):
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            stream["stride"] = -(-w // 64) * 64
            stream["framesize"] = stream["stride"] * h * 3 // 2
        self.camera_config = config
        with BOARD.lock:
            BOARD.configurations.append(config)

    def camera_configuration(self) -> dict[str, Any]:
        return self.camera_config

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        return dict(self.camera_config[name])

    @property
    def encode_stream_name(self) -> str:
        return str(self.camera_config.get("encode") or "main")

    def start(self, config: Any = None, show_preview: Any = False) -> None:
        """Start the sensor: frames flow to the running encoders and to captures."""
        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        with BOARD.lock:
            BOARD.camera_starts += 1
        self._sensor = threading.Thread(
            target=self._run_sensor, name="stand-in sensor", daemon=True
        )
        self._sensor.start()

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if self._sensor is not None:
            self._sensor.join()
            self._sensor = None

    def start_encoder(
        self,
        encoder: Encoder | None = None,
        output: Any = None,
        pts: Any = None,
        quality: Any = None,
        name: str | None = None,
    ) -> None:
        if encoder is None:
            if len(self._encoders) != 1:
                raise RuntimeError("No encoder specified")
            encoder = next(iter(self._encoders))
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        if not streams:
            raise RuntimeError("Camera has not been configured")
        name = name or self.encode_stream_name
        if streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        encoder.name = name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        min_frame_duration = max(self.camera_ctrl_info["FrameDurationLimits"][1].min, 33333)
        try:
            if encoder.framerate is None:  # type: ignore[attr-defined]
                encoder.framerate = 1000000 / min_frame_duration  # type: ignore[attr-defined]
        except AttributeError:
            pass
        encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(encoder)

    def stop_encoder(self, encoders: Any = None) -> None:
        if encoders is None:
            remove = list(self._encoders)
        elif isinstance(encoders, Encoder):
            remove = [encoders]
        else:
            remove = list(encoders)
        with self.lock:
            for encoder in remove:
                self._encoders.discard(encoder)
        for encoder in remove:
            encoder.stop()

    def capture_array(
        self, name: str = "main", wait: Any = None, signal_function: Any = None
    ) -> np.ndarray:
        """The next frame of stream ``name``; YUV420 is ``(height * 3 // 2, stride)``."""
        if not self.started:
            raise RuntimeError("Camera is not running")
        with self._frames:
            previous = self._latest
            if not self._frames.wait_for(lambda: self._latest is not previous, timeout=5):
                raise TimeoutError("no frame from the camera")
            request = self._latest
        assert request is not None
        return request.make_array(name)

    def close(self) -> None:
        """Stop the camera and release it (encoders are the caller's to stop, as in picamera2)."""
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        with BOARD.lock:
            BOARD.open_cameras.discard(self.camera_idx)

    def _frame_duration_s(self) -> float:
        controls = self.camera_config["controls"]
        if "FrameRate" in controls:
            return 1.0 / float(controls["FrameRate"])
        return float(controls["FrameDurationLimits"][0]) / 1_000_000

    def _run_sensor(self) -> None:
        config = self.camera_config
        main_w, main_h = config["main"]["size"]
        renderer = TestPatternRenderer(main_w, main_h, 1 / self._frame_duration_s())
        interval = self._frame_duration_s()
        start, sequence = time.monotonic(), 0
        while self.started:
            due = start + sequence * interval
            time.sleep(max(0.0, due - time.monotonic()))
            if BOARD.stalled:  # no request completes; the frame's slot passes unseen
                start += interval
                continue
            frame = renderer.render(sequence)
            buffers = {"main": _pack(frame, config["main"], config["transform"])}
            if config.get("lores") is not None:
                w, h = config["lores"]["size"]
                buffers["lores"] = _pack(frame.reformat(w, h), config["lores"], config["transform"])
            request = CompletedRequest(buffers, config, time.monotonic_ns())
            with self._frames:
                self._latest = request
                self._frames.notify_all()
            with BOARD.lock:
                BOARD.frames_rendered += 1
            with self.lock:
                encoders = list(self._encoders)
            for encoder in encoders:
                encoder.encode(encoder.name, request)
            sequence += 1


def _pack(frame: Any, stream: dict[str, Any], transform: libcamera.Transform) -> np.ndarray:
    """A YUV420 buffer with rows ``stride`` wide, flipped as the transform says."""
    stride, (w, h) = stream["stride"], stream["size"]
    buffer = np.zeros(stream["framesize"], dtype=np.uint8)
    luma, chroma = stride * h, stride // 2 * (h // 2)
    targets = (
        buffer[:luma].reshape(h, stride)[:, :w],
        buffer[luma : luma + chroma].reshape(h // 2, stride // 2)[:, : w // 2],
        buffer[luma + chroma : luma + 2 * chroma].reshape(h // 2, stride // 2)[:, : w // 2],
    )
    for index, target in enumerate(targets):
        plane = plane_view(frame, index)
        if transform.hflip:
            plane = plane[:, ::-1]
        if transform.vflip:
            plane = plane[::-1, :]
        target[...] = plane
    return buffer
