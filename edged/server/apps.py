"""The apps file: app ids and their secrets, generated on first use, never shipped."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from ..tokens import generate_secret

log = logging.getLogger("edged.server")


def default_apps_path() -> Path:
    """``$EDGED_APPS_FILE``, else /var/lib/edged/apps.yaml for root, else the user's state dir."""
    env = os.environ.get("EDGED_APPS_FILE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/edged/apps.yaml")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "edged" / "apps.yaml"


def load_apps(path: Path, create_app: str | None = None) -> dict[str, str]:
    """Read ``{app_id: secret}``; with ``create_app``, make the file or add the app."""
    apps: dict[str, str] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise EdgedError(ErrorCode.SECRET_UNAVAILABLE, f"{path}: {exc}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
        ):
            raise EdgedError(ErrorCode.SECRET_UNAVAILABLE, f"{path}: expected app_id: secret")
        apps = dict(data)
    if create_app is not None and create_app not in apps:
        apps[create_app] = generate_secret()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(apps, f)
        log_event(log, logging.INFO, "app_secret_created", app=create_app, file=str(path))
    if not apps:
        raise EdgedError(ErrorCode.SECRET_UNAVAILABLE, f"{path}: no apps configured")
    return apps
