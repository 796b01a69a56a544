"""Board health: CPU temperature and Raspberry Pi throttling, where the board tells them.

Sources, each optional (a value the board does not report is ``None``):

* CPU temperature: ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius),
  from the zone whose ``type`` names the CPU (``cpu-thermal`` on a Raspberry Pi),
  else the first zone that reads.
* Throttling (Raspberry Pi): ``vcgencmd get_throttled`` (``throttled=0x50005``), else
  the firmware's ``/sys/devices/platform/soc/soc:firmware/get_throttled`` (hex, no
  ``0x``). The flags are the firmware's: bit 0 under-voltage now, bit 1 ARM frequency
  capped now, bit 2 throttled now, bit 3 soft temperature limit now; bits 16-19 say the
  same happened since boot.
* Under-voltage alone, on kernels that only have the ``rpi_volt`` hwmon device:
  ``/sys/class/hwmon/hwmon*/in0_lcrit_alarm``.

The root of ``/sys`` and the ``vcgencmd`` command are injectable so tests run on a fake
tree. Reading is synchronous and cheap (a few small files, at most one short
subprocess); :meth:`HealthReader.read_async` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("edged.daemon.health")

CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "cpu0-thermal", "soc-thermal", "soc_thermal")
THROTTLED_SYSFS = "sys/devices/platform/soc/soc:firmware/get_throttled"

UNDER_VOLTAGE_NOW = 1 << 0
FREQ_CAPPED_NOW = 1 << 1
THROTTLED_NOW = 1 << 2
SOFT_TEMP_LIMIT_NOW = 1 << 3
PROBLEMS_NOW = UNDER_VOLTAGE_NOW | FREQ_CAPPED_NOW | THROTTLED_NOW | SOFT_TEMP_LIMIT_NOW

_PLAUSIBLE_C = (-60.0, 200.0)
_VCGENCMD_RE = re.compile(r"throttled=(0x[0-9a-fA-F]+)")


@dataclass(frozen=True, slots=True)
class BoardHealth:
    """One reading of the board's health; ``None`` wherever the board tells nothing."""

    cpu_temperature_c: float | None = None
    throttled_flags: int | None = None
    under_voltage_alarm: bool | None = None

    @property
    def throttled(self) -> bool | None:
        """True while the firmware limits the board now (under-voltage, capping,
        throttling or the soft temperature limit: bits 0-3)."""
        if self.throttled_flags is None:
            return None
        return bool(self.throttled_flags & PROBLEMS_NOW)

    @property
    def under_voltage(self) -> bool | None:
        """True while the supply voltage is too low now."""
        if self.throttled_flags is not None:
            return bool(self.throttled_flags & UNDER_VOLTAGE_NOW)
        return self.under_voltage_alarm

    @property
    def reports_temperature(self) -> bool:
        return self.cpu_temperature_c is not None

    @property
    def reports_throttling(self) -> bool:
        return self.throttled_flags is not None

    def to_json(self) -> dict[str, Any]:
        """The retained ``health`` topic's payload."""
        flags = self.throttled_flags
        return {
            "cpu_temperature_c": self.cpu_temperature_c,
            "throttled": self.throttled,
            "throttled_flags": None if flags is None else f"0x{flags:x}",
            "under_voltage": self.under_voltage,
        }


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _zone_number(path: Path) -> int:
    digits = path.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else 1 << 30


def _millidegrees(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        celsius = int(text) / 1000.0
    except ValueError:
        return None
    if not _PLAUSIBLE_C[0] <= celsius <= _PLAUSIBLE_C[1]:
        return None
    return round(celsius, 1)


def parse_vcgencmd(output: str) -> int | None:
    """The flags of ``vcgencmd get_throttled``'s ``throttled=0x50005``, or None."""
    match = _VCGENCMD_RE.search(output)
    return int(match.group(1), 16) if match else None


def parse_sysfs_throttled(text: str | None) -> int | None:
    """The flags of the firmware's ``get_throttled`` file (``50005``), or None."""
    if not text:
        return None
    try:
        return int(text.removeprefix("0x"), 16)
    except ValueError:
        return None


class HealthReader:
    """Owns where this board's health is read from, and reads it.

    The thermal zone found first is remembered; a source that fails is tried again at
    the next reading (boards do not gain sensors, but permissions can change).
    """

    def __init__(
        self,
        root: Path | str = "/",
        vcgencmd: str | None = "vcgencmd",
        timeout: float = 2.0,
    ) -> None:
        self.root = Path(root)
        self.vcgencmd = shutil.which(vcgencmd) if vcgencmd else None
        self.timeout = timeout
        self._zone: Path | None = None

    # ---- temperature -----------------------------------------------------------

    def _zones(self) -> list[Path]:
        base = self.root / "sys/class/thermal"
        try:
            zones = [p for p in base.glob("thermal_zone*") if p.is_dir()]
        except OSError:
            return []
        return sorted(zones, key=_zone_number)

    def cpu_temperature(self) -> float | None:
        """Degrees Celsius of the CPU's thermal zone, or None."""
        if self._zone is not None:
            value = _millidegrees(_read_text(self._zone / "temp"))
            if value is not None:
                return value
            self._zone = None
        zones = self._zones()
        typed = {z: _read_text(z / "type") for z in zones}
        preferred = [z for z in zones if typed[z] in CPU_ZONE_TYPES]
        for zone in preferred + [z for z in zones if z not in preferred]:
            value = _millidegrees(_read_text(zone / "temp"))
            if value is not None:
                self._zone = zone
                return value
        return None

    # ---- throttling ------------------------------------------------------------

    def _vcgencmd_flags(self) -> int | None:
        if not self.vcgencmd:
            return None
        try:
            done = subprocess.run(
                [self.vcgencmd, "get_throttled"],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("vcgencmd get_throttled failed: %s", exc)
            return None
        if done.returncode != 0:
            return None
        return parse_vcgencmd(done.stdout)

    def throttled_flags(self) -> int | None:
        """The firmware's throttling flags, or None when the board has none."""
        flags = self._vcgencmd_flags()
        if flags is None:
            flags = parse_sysfs_throttled(_read_text(self.root / THROTTLED_SYSFS))
        return flags

    def under_voltage_alarm(self) -> bool | None:
        """The ``rpi_volt`` hwmon device's under-voltage alarm, or None."""
        base = self.root / "sys/class/hwmon"
        try:
            devices = sorted(base.glob("hwmon*"))
        except OSError:
            return None
        for dev in devices:
            if _read_text(dev / "name") == "rpi_volt":
                alarm = _read_text(dev / "in0_lcrit_alarm")
                if alarm in ("0", "1"):
                    return alarm == "1"
        return None

    # ---- all of it -------------------------------------------------------------

    def read(self) -> BoardHealth:
        """One reading; never raises for what the board lacks."""
        flags = self.throttled_flags()
        return BoardHealth(
            cpu_temperature_c=self.cpu_temperature(),
            throttled_flags=flags,
            under_voltage_alarm=self.under_voltage_alarm() if flags is None else None,
        )

    async def read_async(self) -> BoardHealth:
        """:meth:`read` in a worker thread, so the event loop never waits on a file."""
        return await asyncio.to_thread(self.read)


def read_health(root: Path | str = "/", vcgencmd: str | None = "vcgencmd") -> BoardHealth:
    """One reading of this board's health (see :class:`HealthReader`)."""
    return HealthReader(root, vcgencmd).read()
