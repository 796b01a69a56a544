"""What Home Assistant's device page says of the device: what it is, and where to go.

The page reads "<model> by <manufacturer>", then the firmware (``sw_version``), the
hardware (``hw_version``) and a "Visit" link (``configuration_url``).
:func:`device_info` fills them from the board and the configuration:

* the model is the board's, as its device tree names it ("Raspberry Pi 4 Model B"), its
  revision ("Rev 1.4") the hardware version; on a machine without a device tree, the
  firmware's (DMI) product name; else :data:`FALLBACK_MODEL`. The manufacturer stays
  "edged", the software the device runs, and ``sw_version`` is edged's version;
* the link is the web page of the embedded room server (the page a person joins the
  room from), when the server runs and listens on an address other machines reach: a
  loopback address would send Home Assistant's user to their own machine.

:data:`PROJECT_URL` is the project's address, the origin's ``url`` (``support_url``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Config

PROJECT_URL = "https://edged.example.org"
"""The project's home page. No public address is named in pyproject.toml, the README or
debian/control (whose maintainer address is also on example.org): replace this one
constant when the project gets one."""

FALLBACK_MODEL = "Debian board"
"""The model of a machine that names itself neither in a device tree nor in DMI."""

DMI_DIR = "sys/class/dmi/id"
# What firmware writes into DMI when the maker wrote nothing useful.
_DMI_PLACEHOLDERS = {
    "",
    "default string",
    "none",
    "not applicable",
    "not specified",
    "system product name",
    "system manufacturer",
    "to be filled by o.e.m.",
}
_REVISION = re.compile(r"^(?P<model>.+?)\s+(?P<rev>Rev\s+\S+)$")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the device page shows beside the name and the software's version."""

    model: str = FALLBACK_MODEL
    hw_version: str | None = None
    configuration_url: str | None = None


def _dmi(root: Path, name: str) -> str:
    try:
        text = (root / DMI_DIR / name).read_text(errors="replace").strip()
    except OSError:
        return ""
    return "" if text.lower() in _DMI_PLACEHOLDERS else text


def board_model(device_tree_model: str, root: Path = Path("/")) -> tuple[str, str | None]:
    """The model and the hardware revision (or None) of this machine.

    ``device_tree_model`` is :func:`edged.media.board.read_model`'s text ("" without a
    device tree); ``root`` is where DMI is read from when it is empty.
    """
    if device_tree_model:
        match = _REVISION.match(device_tree_model)
        if match:
            return match["model"], match["rev"]
        return device_tree_model, None
    product, vendor = _dmi(root, "product_name"), _dmi(root, "sys_vendor")
    if product and vendor and not product.lower().startswith(vendor.lower()):
        return f"{vendor} {product}", None
    return product or FALLBACK_MODEL, None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_page_url(config: Config) -> str | None:
    """The embedded server's web page as another machine opens it, or None when the
    daemon runs no server or its server listens on a loopback address only."""
    if not config.embedded_server or _loopback(config.server.host):
        return None
    from ..server.webapp import page_url

    server = config.server
    return page_url(server.host, server.port, https=server.tls is not None)


def device_info(config: Config, device_tree_model: str, root: Path = Path("/")) -> DeviceInfo:
    """The device page's model, hardware version and link for this machine."""
    model, revision = board_model(device_tree_model, root)
    return DeviceInfo(model, revision, web_page_url(config))
