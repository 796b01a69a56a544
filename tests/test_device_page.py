"""The device page as a Home Assistant user reads it: what the device is, the link to its
web page, the origin's address, the room state in words, entity names that say what
they count or report, rtt rounded, and docs/mqtt.md listing every entity the daemon can
announce. Templates are rendered as in test_discovery.py (Jinja2's sandbox)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from edged import __version__
from edged.config.model import Config
from edged.daemon.discovery import MANUFACTURER, build_discovery
from edged.daemon.discovery_device import (
    FALLBACK_MODEL,
    PROJECT_URL,
    board_model,
    device_info,
    web_page_url,
)
from edged.daemon.health import BoardHealth
from edged.media.board import detect_board
from edged.model import RoomState

from test_discovery import FULL_HEALTH, QUALITY, STATE, TOPICS, build, expand, render

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "device-tree"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"


def device_page(**kw: Any) -> dict[str, Any]:
    """The ``device`` of the payload, its keys spelled out as Home Assistant reads them."""
    _, payload = build(**kw)
    return dict(expand(payload)["device"])


# ---- what the device is --------------------------------------------------------------


@pytest.mark.parametrize(
    ("board", "model", "hardware"),
    [
        ("pi4b", "Raspberry Pi 4 Model B", "Rev 1.4"),
        ("pi5", "Raspberry Pi 5 Model B", "Rev 1.0"),
        ("zero2w", "Raspberry Pi Zero 2 W", "Rev 1.0"),
        ("cm4", "Raspberry Pi Compute Module 4", "Rev 1.0"),
        ("pi3bplus", "Raspberry Pi 3 Model B Plus", "Rev 1.3"),
        ("rockpro64", "Pine64 RockPro64 v2.1", None),
    ],
)
def test_the_model_is_the_board(board: str, model: str, hardware: str | None) -> None:
    root = FIXTURES / board
    found = detect_board(root, hardware_encoder=lambda: False, cores=4)
    info = device_info(Config.model_validate({}), found.model, root)
    device = device_page(device=info)
    assert (device["model"], device.get("hw_version")) == (model, hardware)
    assert device["manufacturer"] == MANUFACTURER
    assert device["model"] != device["manufacturer"]
    assert device["sw_version"] == "0.1.0"  # the software, as the firmware line


def write_dmi(root: Path, vendor: str | None, product: str | None) -> Path:
    dmi = root / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    for name, text in (("sys_vendor", vendor), ("product_name", product)):
        if text is not None:
            (dmi / name).write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("vendor", "product", "model"),
    [
        ("QEMU", "Standard PC (Q35 + ICH9, 2009)", "QEMU Standard PC (Q35 + ICH9, 2009)"),
        ("Dell Inc.", "Dell Inc. OptiPlex 3080", "Dell Inc. OptiPlex 3080"),
        (None, "HP t630 Thin Client", "HP t630 Thin Client"),
        ("To Be Filled By O.E.M.", "To Be Filled By O.E.M.", FALLBACK_MODEL),
        ("System manufacturer", "System Product Name", FALLBACK_MODEL),
        (None, None, FALLBACK_MODEL),
    ],
)
def test_a_machine_without_device_tree(
    tmp_path: Path, vendor: str | None, product: str | None, model: str
) -> None:
    root = write_dmi(tmp_path, vendor, product)
    assert board_model("", root) == (model, None)
    assert model != MANUFACTURER


def test_without_any_device_information_the_model_is_not_edged() -> None:
    device = device_page()
    assert device["model"] == FALLBACK_MODEL != device["manufacturer"]


# ---- the link to the web page --------------------------------------------------------


def config(tmp_path: Path, **server: Any) -> Config:
    if server.pop("tls", False):
        for name in ("cert.pem", "key.pem"):
            (tmp_path / name).write_text("x")
        server["tls"] = {
            "cert_file": str(tmp_path / "cert.pem"),
            "key_file": str(tmp_path / "key.pem"),
        }
    return Config.model_validate({"server": server})


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ({"host": "0.0.0.0"}, "http://door.local:8790"),
        ({"host": "::", "port": 9000}, "http://door.local:9000"),
        ({"host": "192.168.1.20", "port": 8443, "tls": True}, "https://192.168.1.20:8443"),
        ({"host": "door.example.net"}, "http://door.example.net:8790"),
        ({"host": "fd00::20"}, "http://[fd00::20]:8790"),
        ({}, None),  # 127.0.0.1: a link to the user's own machine would be wrong
        ({"host": "localhost"}, None),
        ({"host": "::1"}, None),
        ({"enabled": False, "host": "0.0.0.0"}, None),  # no embedded server, no page
    ],
)
def test_configuration_url_is_the_web_page_others_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: dict[str, Any], url: str | None
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "door")
    cfg = config(tmp_path, **server)
    assert web_page_url(cfg) == url
    device = device_page(device=device_info(cfg, ""))
    assert device.get("configuration_url") == url
    if url is not None:  # what Home Assistant's configuration_url accepts
        parsed = urlparse(url)
        assert parsed.scheme in ("http", "https") and parsed.netloc


def test_a_room_server_elsewhere_gives_no_link(tmp_path: Path) -> None:
    cfg = Config.model_validate({"room": {"server_url": "wss://rooms.example.net/ws"}})
    assert not cfg.embedded_server
    assert "configuration_url" not in device_page(device=device_info(cfg, ""))


# ---- origin ---------------------------------------------------------------------------


def test_origin_names_the_project_and_its_address() -> None:
    _, payload = build()
    origin = expand(payload)["origin"]
    assert origin == {"name": "edged", "sw_version": "0.1.0", "support_url": PROJECT_URL}
    assert urlparse(PROJECT_URL).scheme == "https"
    _, payload = build_discovery(TOPICS, "cam-1", "Hall camera", __version__)
    assert payload["o"]["url"] == PROJECT_URL  # by default, as the daemon sends it


# ---- the entities -------------------------------------------------------------------


def components(**kw: Any) -> dict[str, dict[str, Any]]:
    _, payload = build(**kw)
    return dict(expand(payload)["components"])


@pytest.mark.parametrize("state", list(RoomState))
def test_room_state_in_words(state: RoomState) -> None:
    comp = components()["room_state"]
    shown = render(
        comp["value_template"], {**STATE, "room": {**STATE["room"], "state": state.name}}
    )
    assert shown == state.name.capitalize()  # "Connected", not "CONNECTED"
    assert shown in comp["options"]
    assert comp["device_class"] == "enum"


def test_room_state_options_are_words() -> None:
    options = components()["room_state"]["options"]
    assert options == ["Disconnected", "Connecting", "Connected"]
    assert not any(o.isupper() or "_" in o for o in options)


def test_the_event_entity_says_it_reports_joining_and_leaving() -> None:
    comp = components()["user_events"]
    assert comp["name"] == "Users joining and leaving"
    assert comp["event_types"] == ["joined", "left"]


def test_counts_say_the_device_is_not_among_them() -> None:
    comps = components()
    assert comps["users"]["name"] == "Other users in the room"
    assert comps["streams"]["name"] == "Streams from others"
    rows = doc_rows()
    assert "besides the device" in rows["users"][3]
    assert "the device's own is not counted" in rows["streams"][3]
    assert "the device sends its stream on" in rows["viewers"][3]


@pytest.mark.parametrize(
    ("rtt", "shown"),
    [(3.14159, "3.1"), (0.04, "0.0"), (12.0, "12.0"), (251.96, "252.0"), (None, "None")],
)
def test_rtt_is_rounded(rtt: float | None, shown: str) -> None:
    comp = components()["rtt"]
    quality = {**QUALITY, "summary": {**QUALITY["summary"], "rtt_ms": rtt}}
    assert render(comp["value_template"], quality) == shown
    assert comp["suggested_display_precision"] == 1


# ---- docs/mqtt.md -------------------------------------------------------------------


def doc_rows() -> dict[str, list[str]]:
    """The Home Assistant entity table of docs/mqtt.md: key -> name, platform, from,
    notes. A row of two keys ("login, logout") names both ("Log in, Log out")."""
    section = DOCS.read_text().split("### Home Assistant", 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| key |"):
            continue
        keys, names, *rest = (c.strip() for c in line.strip().strip("|").split("|"))
        for key, name in zip(keys.split(", "), names.split(", "), strict=True):
            rows[key] = [name, *rest]
    return rows


def every_component() -> dict[str, dict[str, Any]]:
    """Every entity the daemon can announce, over every kind of board."""
    comps: dict[str, dict[str, Any]] = {}
    for health in (FULL_HEALTH, BoardHealth(under_voltage_alarm=False)):
        comps.update(components(health=health, audio=True))
    return comps


def test_docs_list_every_entity_the_daemon_can_announce() -> None:
    comps, rows = every_component(), doc_rows()
    assert "under_voltage" in comps
    assert set(rows) == set(comps)
    for key, comp in comps.items():
        name, platform = rows[key][:2]
        assert (name, platform.split()[0].rstrip(",")) == (comp["name"], comp["platform"]), key


def test_docs_say_when_quality_sensors_are_unknown() -> None:
    text = " ".join(DOCS.read_text().split("### Home Assistant", 1)[1].split())
    assert "they are **unknown** while the device does not publish" in text
    assert "Round-trip time is also unknown while nobody watches the stream" in text


def test_docs_say_the_switch_logs_in() -> None:
    text = DOCS.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `start_publishing`"))
    assert "logged out, it logs in first" in row
    assert "on while logged out, it logs in, then publishes" in doc_rows()["publishing"][3]
