"""Board health read from a fake /sys tree (and a fake vcgencmd) under tmp_path."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from edged.daemon.health import (
    THROTTLED_SYSFS,
    BoardHealth,
    HealthReader,
    parse_sysfs_throttled,
    parse_vcgencmd,
    read_health,
)


def zone(root: Path, n: int, kind: str, millideg: str) -> Path:
    path = root / f"sys/class/thermal/thermal_zone{n}"
    path.mkdir(parents=True)
    (path / "type").write_text(kind + "\n")
    (path / "temp").write_text(millideg + "\n")
    return path


def throttled_file(root: Path, text: str) -> None:
    path = root / THROTTLED_SYSFS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_vcgencmd(tmp_path: Path, output: str, code: int = 0) -> str:
    script = tmp_path / "bin" / "vcgencmd"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        f'#!/bin/sh\n[ "$1" = get_throttled ] || exit 2\necho "{output}"\nexit {code}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_empty_board_reports_nothing(tmp_path: Path) -> None:
    health = read_health(tmp_path, vcgencmd=None)
    assert health == BoardHealth()
    assert not health.reports_temperature and not health.reports_throttling
    assert health.to_json() == {
        "cpu_temperature_c": None,
        "throttled": None,
        "throttled_flags": None,
        "under_voltage": None,
    }


def test_cpu_thermal_zone_is_preferred(tmp_path: Path) -> None:
    zone(tmp_path, 0, "gpu-thermal", "60000")
    zone(tmp_path, 1, "cpu-thermal", "47234")
    assert read_health(tmp_path, vcgencmd=None).cpu_temperature_c == 47.2


def test_first_zone_by_number_without_a_cpu_zone(tmp_path: Path) -> None:
    zone(tmp_path, 10, "acpitz", "30000")
    zone(tmp_path, 2, "x86_pkg_temp", "51500")
    assert read_health(tmp_path, vcgencmd=None).cpu_temperature_c == 51.5


def test_unreadable_or_implausible_zone_is_passed_over(tmp_path: Path) -> None:
    zone(tmp_path, 0, "cpu-thermal", "garbage")
    zone(tmp_path, 1, "soc", "999999999")
    zone(tmp_path, 2, "soc", "-5000")
    assert read_health(tmp_path, vcgencmd=None).cpu_temperature_c == -5.0


def test_zone_is_remembered_and_found_again(tmp_path: Path) -> None:
    first = zone(tmp_path, 0, "cpu-thermal", "40000")
    reader = HealthReader(tmp_path, vcgencmd=None)
    assert reader.cpu_temperature() == 40.0
    (first / "temp").write_text("41000\n")
    assert reader.cpu_temperature() == 41.0
    (first / "temp").unlink()
    zone(tmp_path, 1, "soc", "42000")
    assert reader.cpu_temperature() == 42.0


def test_throttling_from_firmware_sysfs(tmp_path: Path) -> None:
    throttled_file(tmp_path, "50005\n")
    health = read_health(tmp_path, vcgencmd=None)
    assert health.throttled_flags == 0x50005
    assert health.throttled is True
    assert health.under_voltage is True
    assert health.reports_throttling
    assert health.to_json()["throttled_flags"] == "0x50005"


def test_only_past_events_are_not_throttling_now(tmp_path: Path) -> None:
    throttled_file(tmp_path, "50000\n")
    health = read_health(tmp_path, vcgencmd=None)
    assert health.throttled is False and health.under_voltage is False
    assert json.loads(json.dumps(health.to_json())) == {
        "cpu_temperature_c": None,
        "throttled": False,
        "throttled_flags": "0x50000",
        "under_voltage": False,
    }


def test_vcgencmd_comes_first(tmp_path: Path) -> None:
    throttled_file(tmp_path, "50005\n")
    health = read_health(tmp_path, vcgencmd=fake_vcgencmd(tmp_path, "throttled=0x4"))
    assert health.throttled_flags == 0x4
    assert health.throttled is True and health.under_voltage is False


def test_failing_vcgencmd_falls_back_to_sysfs(tmp_path: Path) -> None:
    throttled_file(tmp_path, "0\n")
    failing = fake_vcgencmd(tmp_path, "VCHI initialization failed", code=255)
    assert read_health(tmp_path, vcgencmd=failing).throttled_flags == 0
    missing = str(tmp_path / "no-such-vcgencmd")
    assert read_health(tmp_path, vcgencmd=missing).throttled_flags == 0


def test_under_voltage_from_hwmon_alone(tmp_path: Path) -> None:
    other = tmp_path / "sys/class/hwmon/hwmon0"
    other.mkdir(parents=True)
    (other / "name").write_text("cpu_thermal\n")
    volt = tmp_path / "sys/class/hwmon/hwmon1"
    volt.mkdir(parents=True)
    (volt / "name").write_text("rpi_volt\n")
    (volt / "in0_lcrit_alarm").write_text("1\n")
    health = read_health(tmp_path, vcgencmd=None)
    assert health.under_voltage is True
    assert health.throttled is None and not health.reports_throttling
    assert health.to_json()["under_voltage"] is True


@pytest.mark.parametrize(
    ("text", "flags"),
    [("throttled=0x50005\n", 0x50005), ("throttled=0x0", 0), ("error", None), ("", None)],
)
def test_parse_vcgencmd(text: str, flags: int | None) -> None:
    assert parse_vcgencmd(text) == flags


@pytest.mark.parametrize(
    ("text", "flags"), [("50005", 0x50005), ("0x4", 4), ("", None), (None, None), ("zz", None)]
)
def test_parse_sysfs(text: str | None, flags: int | None) -> None:
    assert parse_sysfs_throttled(text) == flags


async def test_read_async(tmp_path: Path) -> None:
    zone(tmp_path, 0, "cpu-thermal", "55000")
    health = await HealthReader(tmp_path, vcgencmd=None).read_async()
    assert health.cpu_temperature_c == 55.0
