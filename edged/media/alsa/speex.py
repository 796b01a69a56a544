"""speexdsp's echo canceller and preprocessor, through ctypes, as an :class:`EchoCanceller`.

``libspeexdsp.so.1`` (Debian: ``libspeexdsp1``, on every architecture) is loaded on first
use, so the package stays ``Architecture: all`` and a board without the library still
runs, without echo cancellation. The C API used (``speex/speex_echo.h``,
``speex/speex_preprocess.h``, speexdsp 1.2):

* ``speex_echo_state_init(frame_size, filter_length)``: the multidelay block-frequency
  adaptive filter (MDF), ``filter_length`` samples of echo tail;
* ``speex_echo_cancellation(st, rec, play, out)``: one frame, with ``play`` the frame of
  the reference that is playing while ``rec`` is captured;
* ``speex_preprocess_state_init(frame_size, rate)`` and ``speex_preprocess_run``: noise
  suppression, residual echo suppression (linked to the echo state by
  ``SPEEX_PREPROCESS_SET_ECHO_STATE``) and automatic gain control, in place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

import numpy as np

from ...errors import EdgedError, ErrorCode
from .echo import EchoSettings, Samples

LIBRARY = "libspeexdsp.so.1"

SPEEX_ECHO_SET_SAMPLING_RATE = 24
SPEEX_PREPROCESS_SET_DENOISE = 0
SPEEX_PREPROCESS_SET_AGC = 2
SPEEX_PREPROCESS_SET_AGC_LEVEL = 6
SPEEX_PREPROCESS_SET_NOISE_SUPPRESS = 18
SPEEX_PREPROCESS_SET_ECHO_SUPPRESS = 20
SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE = 22
SPEEX_PREPROCESS_SET_ECHO_STATE = 24

_lock = threading.Lock()
_library: ctypes.CDLL | None = None

_I16P = ctypes.POINTER(ctypes.c_int16)


def load_speexdsp() -> ctypes.CDLL:
    """``libspeexdsp`` with its prototypes; raises ``EdgedError(ECHO_CANCELLER_UNAVAILABLE)``
    when it is not installed."""
    global _library
    with _lock:
        if _library is None:
            _library = _prototyped(_open())
        return _library


def speexdsp_available() -> bool:
    """Whether libspeexdsp can be loaded on this machine."""
    try:
        load_speexdsp()
    except EdgedError:
        return False
    return True


def _open() -> ctypes.CDLL:
    for name in (LIBRARY, ctypes.util.find_library("speexdsp")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    raise EdgedError(
        ErrorCode.ECHO_CANCELLER_UNAVAILABLE,
        "libspeexdsp is not installed (apt install libspeexdsp1)",
    )


def _prototyped(lib: ctypes.CDLL) -> ctypes.CDLL:
    p = ctypes.c_void_p
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "speex_echo_state_init": (p, [ctypes.c_int, ctypes.c_int]),
        "speex_echo_state_destroy": (None, [p]),
        "speex_echo_cancellation": (None, [p, _I16P, _I16P, _I16P]),
        "speex_echo_state_reset": (None, [p]),
        "speex_echo_ctl": (ctypes.c_int, [p, ctypes.c_int, p]),
        "speex_preprocess_state_init": (p, [ctypes.c_int, ctypes.c_int]),
        "speex_preprocess_state_destroy": (None, [p]),
        "speex_preprocess_run": (ctypes.c_int, [p, _I16P]),
        "speex_preprocess_ctl": (ctypes.c_int, [p, ctypes.c_int, p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def _pointer(samples: Samples) -> Any:
    return samples.ctypes.data_as(_I16P)


class SpeexCanceller:
    """Owns one speexdsp echo state and preprocessor state, at 10 ms mono frames.

    :meth:`process` cancels the echo of ``reference`` in ``captured`` with the adaptive
    filter, then runs the preprocessor (residual echo suppression, and noise suppression
    and gain control as ``settings`` asks). Not thread-safe: one capture thread calls it.
    """

    name = "speexdsp"
    finds_delay = False

    def __init__(self, rate: int, settings: EchoSettings) -> None:
        self._lib = load_speexdsp()
        self.rate = rate
        self.frame_size = rate // 100
        taps = max(self.frame_size, round(rate * settings.tail_ms / 1000))
        self._echo = self._lib.speex_echo_state_init(self.frame_size, taps)
        self._pre = self._lib.speex_preprocess_state_init(self.frame_size, rate)
        if not self._echo or not self._pre:
            self.close()
            raise EdgedError(ErrorCode.ECHO_CANCELLER_UNAVAILABLE, "speexdsp refused its state")
        self._echo_ctl(SPEEX_ECHO_SET_SAMPLING_RATE, rate)
        self._pre_ctl(SPEEX_PREPROCESS_SET_ECHO_STATE, None, pointer=self._echo)
        self._pre_ctl(SPEEX_PREPROCESS_SET_DENOISE, int(settings.noise_suppression))
        self._pre_ctl(SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, -abs(settings.noise_suppress_db))
        self._pre_ctl(SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, -abs(settings.echo_suppress_db))
        self._pre_ctl(SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, -abs(settings.echo_suppress_db))
        self._pre_ctl(SPEEX_PREPROCESS_SET_AGC, int(settings.auto_gain))
        if settings.auto_gain:
            level = ctypes.c_float(settings.auto_gain_level)
            self._lib.speex_preprocess_ctl(
                self._pre, SPEEX_PREPROCESS_SET_AGC_LEVEL, ctypes.byref(level)
            )
        # One set of buffers for the C calls, their pointers made once.
        self._rec = np.zeros(self.frame_size, dtype=np.int16)
        self._play = np.zeros(self.frame_size, dtype=np.int16)
        self._out = np.zeros(self.frame_size, dtype=np.int16)
        self._pointers = (_pointer(self._rec), _pointer(self._play), _pointer(self._out))

    def _echo_ctl(self, request: int, value: int) -> None:
        number = ctypes.c_int(value)
        self._lib.speex_echo_ctl(self._echo, request, ctypes.byref(number))

    def _pre_ctl(self, request: int, value: int | None, *, pointer: Any = None) -> None:
        if pointer is not None:
            self._lib.speex_preprocess_ctl(self._pre, request, pointer)
            return
        number = ctypes.c_int(value or 0)
        self._lib.speex_preprocess_ctl(self._pre, request, ctypes.byref(number))

    def process(self, captured: Samples, reference: Samples) -> Samples:
        """One 10 ms frame of the microphone with the echo of ``reference`` removed."""
        self._rec[:] = captured
        self._play[:] = reference
        rec, play, out = self._pointers
        self._lib.speex_echo_cancellation(self._echo, rec, play, out)
        self._lib.speex_preprocess_run(self._pre, out)
        return self._out.copy()

    def reset(self) -> None:
        """Forget the learned echo path (the speaker or its delay changed)."""
        if self._echo:
            self._lib.speex_echo_state_reset(self._echo)

    def close(self) -> None:
        """Free the C states (idempotent)."""
        if self._pre:
            self._lib.speex_preprocess_state_destroy(self._pre)
            self._pre = None
        if self._echo:
            self._lib.speex_echo_state_destroy(self._echo)
            self._echo = None
