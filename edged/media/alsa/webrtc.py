"""WebRTC's echo canceller (AEC3), through PipeWire's SPA plugin and ctypes, as an
:class:`EchoCanceller`.

Debian packages WebRTC's audio processing (``libwebrtc-audio-processing-1-3``) with a
C++ API only; PipeWire's ``aec-webrtc`` plugin (``libspa-0.2-modules``, every Debian
architecture) wraps it behind a plain C interface, so it is reached here without a
compiled module and the package stays ``Architecture: all``. No PipeWire daemon is
involved: the plugin is a shared object loaded with ``dlopen``. The C interface used
(``spa/support/plugin.h``, ``spa/interfaces/audio/aec.h``, PipeWire 1.x):

* ``spa_handle_factory_enum`` gives the factory; ``get_size`` and ``init`` make a handle
  in memory we own (no support objects: the plugin's log is optional);
* the handle's ``get_interface("Spa:Pointer:Interface:Audio:AEC")`` gives the
  ``spa_audio_aec``, whose methods ``init(args, info)`` (a dictionary of
  ``webrtc.*`` switches, the rate and channels) and ``run(rec, play, out, n)`` (planar
  float frames, multiples of 10 ms) do the work: ``play`` is what the speaker plays,
  ``rec`` the microphone, ``out`` the microphone without the echo.

Debian 13's plugin is built on webrtc-audio-processing 1.3, whose canceller is AEC3
(with its own delay estimator and noise suppression); Debian 12's is built on the old
0.3 (AEC2). :attr:`WebrtcCanceller.generation` says which was loaded.
"""

from __future__ import annotations

import ctypes
import os
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EdgedError, ErrorCode
from .echo import EchoSettings, Samples

PLUGIN = "aec/libspa-aec-webrtc.so"
AEC_INTERFACE = b"Spa:Pointer:Interface:Audio:AEC"
AUDIO_MAX_CHANNELS = 64

_FloatP = ctypes.POINTER(ctypes.c_float)


class _DictItem(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class _Dict(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint32),
        ("n_items", ctypes.c_uint32),
        ("items", ctypes.POINTER(_DictItem)),
    ]


class _AudioInfoRaw(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("rate", ctypes.c_uint32),
        ("channels", ctypes.c_uint32),
        ("position", ctypes.c_uint32 * AUDIO_MAX_CHANNELS),
    ]


_GetSize = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p)
_VoidP = ctypes.c_void_p
_Init = ctypes.CFUNCTYPE(ctypes.c_int, _VoidP, _VoidP, _VoidP, _VoidP, ctypes.c_uint32)
_GetInterface = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)
)
_Clear = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_AecInit = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_Dict), ctypes.POINTER(_AudioInfoRaw)
)
_AecRun = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(_FloatP),
    ctypes.POINTER(_FloatP),
    ctypes.POINTER(_FloatP),
    ctypes.c_uint32,
)


class _Factory(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("name", ctypes.c_char_p),
        ("info", ctypes.c_void_p),
        ("get_size", _GetSize),
        ("init", _Init),
        ("enum_interface_info", ctypes.c_void_p),
    ]


class _Handle(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("get_interface", _GetInterface), ("clear", _Clear)]


class _Interface(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("version", ctypes.c_uint32),
        ("funcs", ctypes.c_void_p),
        ("data", ctypes.c_void_p),
    ]


class _Aec(ctypes.Structure):
    _fields_ = [
        ("iface", _Interface),
        ("name", ctypes.c_char_p),
        ("info", ctypes.c_void_p),
        ("latency", ctypes.c_char_p),
    ]


class _AecMethods(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("add_listener", ctypes.c_void_p),
        ("init", _AecInit),
        ("run", _AecRun),
    ]


_lock = threading.Lock()
_factory: Any = None


def plugin_paths() -> list[Path]:
    """Where the plugin is looked for: ``$SPA_PLUGIN_DIR``, then Debian's directory."""
    dirs = [d for d in os.environ.get("SPA_PLUGIN_DIR", "").split(":") if d]
    arch = sysconfig.get_config_var("MULTIARCH")
    if arch:
        dirs.append(f"/usr/lib/{arch}/spa-0.2")
    dirs.append("/usr/lib/spa-0.2")
    return [Path(d) / PLUGIN for d in dirs]


def _load_factory() -> Any:
    """The plugin's handle factory (a ``_Factory`` pointer); ``EdgedError`` when missing."""
    global _factory
    with _lock:
        if _factory is not None:
            return _factory
        for path in plugin_paths():
            if not path.exists():
                continue
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise EdgedError(
                    ErrorCode.ECHO_CANCELLER_UNAVAILABLE, f"cannot load {path}: {exc}"
                ) from exc
            enum = lib.spa_handle_factory_enum
            enum.restype = ctypes.c_int
            enum.argtypes = [
                ctypes.POINTER(ctypes.POINTER(_Factory)),
                ctypes.POINTER(ctypes.c_uint32),
            ]
            factory = ctypes.POINTER(_Factory)()
            index = ctypes.c_uint32(0)
            if enum(ctypes.byref(factory), ctypes.byref(index)) != 1:
                raise EdgedError(ErrorCode.ECHO_CANCELLER_UNAVAILABLE, f"{path} has no factory")
            _factory = (lib, factory, path)
            return _factory
        raise EdgedError(
            ErrorCode.ECHO_CANCELLER_UNAVAILABLE,
            "WebRTC's echo canceller is not installed (apt install libspa-0.2-modules)",
        )


def webrtc_available() -> bool:
    """Whether PipeWire's WebRTC echo-cancellation plugin can be loaded here."""
    try:
        _load_factory()
    except EdgedError:
        return False
    return True


def aec3_available() -> bool:
    """Whether the plugin loads and is built on AEC3 (Debian 13 and later)."""
    return webrtc_available() and _generation() == "aec3"


def _generation() -> str:
    """ "aec3" when the loaded plugin is built on webrtc-audio-processing 1.x (its library
    is ``libwebrtc-audio-processing-1.so``), else "aec2" (0.3's ``libwebrtc_audio_processing``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return "aec3" if "libwebrtc-audio-processing-1" in maps else "aec2"


class WebrtcCanceller:
    """Owns one instance of the plugin (its memory, its ``spa_audio_aec``), at 10 ms mono
    frames: echo cancellation, with WebRTC's noise suppression and gain control as
    ``settings`` asks. Not thread-safe: one capture thread calls it."""

    name = "webrtc"
    finds_delay = True
    """Both generations estimate the echo's delay themselves (AEC3's delay estimator;
    AEC2 with the plugin's ``webrtc.delay_agnostic``, on by default): a reference moved
    under them was measured to cost AEC3 10 to 30 dB of ERLE (bench/aec.py)."""

    def __init__(self, rate: int, settings: EchoSettings) -> None:
        self._lib, self._factory, _path = _load_factory()
        self.generation = _generation()
        self.rate = rate
        self.frame_size = rate // 100
        self.settings = settings
        self._memory: Any = None
        self._object: int | None = None
        self._run: Any = None
        self._rec = np.zeros(self.frame_size, dtype=np.float32)
        self._play = np.zeros(self.frame_size, dtype=np.float32)
        self._out = np.zeros(self.frame_size, dtype=np.float32)
        self._pointers = tuple(
            (_FloatP * 1)(a.ctypes.data_as(_FloatP)) for a in (self._rec, self._play, self._out)
        )
        self._open()

    def _open(self) -> None:
        factory = self._factory.contents
        this = ctypes.cast(self._factory, ctypes.c_void_p)
        memory = ctypes.create_string_buffer(factory.get_size(this, None))
        if factory.init(this, ctypes.cast(memory, ctypes.c_void_p), None, None, 0) < 0:
            raise EdgedError(ErrorCode.ECHO_CANCELLER_UNAVAILABLE, "the WebRTC plugin refused")
        handle = _Handle.from_buffer(memory)
        found = ctypes.c_void_p()
        if handle.get_interface(ctypes.cast(memory, ctypes.c_void_p), AEC_INTERFACE, found) < 0:
            raise EdgedError(ErrorCode.ECHO_CANCELLER_UNAVAILABLE, "no AEC interface")
        aec = _Aec.from_address(found.value or 0)
        methods = _AecMethods.from_address(aec.iface.funcs)
        s = self.settings
        switches = {
            b"webrtc.noise_suppression": s.noise_suppression,
            b"webrtc.gain_control": s.auto_gain,
            b"webrtc.high_pass_filter": True,
            b"webrtc.voice_detection": False,
        }
        items = (_DictItem * len(switches))(
            *(_DictItem(k, b"true" if v else b"false") for k, v in switches.items())
        )
        args = _Dict(0, len(switches), items)
        info = _AudioInfoRaw(0, 0, self.rate, 1)
        if methods.init(aec.iface.data, ctypes.byref(args), ctypes.byref(info)) < 0:
            handle.clear(ctypes.cast(memory, ctypes.c_void_p))
            raise EdgedError(ErrorCode.ECHO_CANCELLER_UNAVAILABLE, "the WebRTC canceller refused")
        self._memory, self._object, self._run = memory, aec.iface.data, methods.run

    def process(self, captured: Samples, reference: Samples) -> Samples:
        """One 10 ms frame of the microphone with the echo of ``reference`` removed."""
        if self._object is None:
            return captured
        np.multiply(captured, 1 / 32768, out=self._rec, casting="unsafe")
        np.multiply(reference, 1 / 32768, out=self._play, casting="unsafe")
        rec, play, out = self._pointers
        self._run(self._object, rec, play, out, self.frame_size)
        scaled = np.clip(self._out * 32768, -32768, 32767)
        result: Samples = scaled.astype(np.int16)
        return result

    def reset(self) -> None:
        """Nothing: AEC3 follows a moved echo path by itself (its own delay estimate and
        adaptive filters), and a fresh instance would only lose what it learned (measured
        in bench/aec.py: ERLE 34 dB with a fresh instance at each move, 42 without)."""

    def close(self) -> None:
        """Free the instance (idempotent)."""
        memory, self._memory, self._object = self._memory, None, None
        if memory is not None:
            handle = _Handle.from_buffer(memory)
            handle.clear(ctypes.cast(memory, ctypes.c_void_p))
