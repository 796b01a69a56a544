"""The ``edged`` command: version, token minting, and the server it starts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from edged import __version__
from edged.tokens import verify

from conftest import free_port
from protoclient import ProtoClient


def edged(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    out = edged("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"edged {__version__}"


def test_token_is_minted_from_the_apps_file(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text("home: a-secret-long-enough-for-hmac-sha256-xx\n")
    out = edged(
        "token",
        "--apps",
        str(apps),
        "--app",
        "home",
        "--user",
        "door",
        "--room",
        "porch",
        "--ttl",
        "120",
        "--stream",
        "cam",
    )
    assert out.returncode == 0, out.stderr
    claims = verify(
        out.stdout.strip(),
        "a-secret-long-enough-for-hmac-sha256-xx",
        app_id="home",
        user_id="door",
        room_id="porch",
    )
    assert claims.stream_ids == frozenset({"cam"})


def test_token_for_an_unknown_app_names_the_problem(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text("home: s3cret-s3cret-s3cret-s3cret-s3cret\n")
    out = edged("token", "--apps", str(apps), "--app", "work", "--user", "u")
    assert out.returncode == 2
    assert "1002037" in out.stderr and "work" in out.stderr


async def test_server_creates_a_private_app_secret_and_serves_logins(tmp_path: Path) -> None:
    apps = tmp_path / "state" / "apps.yaml"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edged",
        "server",
        "--port",
        str(port),
        "--apps",
        str(apps),
        "--app",
        "home",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(100):
            if apps.exists():
                break
            await asyncio.sleep(0.1)
        assert apps.stat().st_mode & 0o077 == 0, "the secret file must be private"
        secret = yaml.safe_load(apps.read_text())["home"]
        token = edged("token", "--apps", str(apps), "--app", "home", "--user", "u").stdout
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    client = await ProtoClient(f"ws://127.0.0.1:{port}/ws", http).connect()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            result = await client.login(
                app_id="home", room_id="r", user_id="u", token=token.strip()
            )
            assert result["user"]["user_id"] == "u"
            await client.close()
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert secret not in err.decode()
    assert json.dumps(secret) not in err.decode()
