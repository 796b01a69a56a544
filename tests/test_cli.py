"""The ``edged`` command: its help, its errors, token minting, and the server it starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from edged import __version__
from edged.testing.waiting import until
from edged.tokens import verify

from conftest import free_port
from protoclient import ProtoClient

SECRET = "a-secret-long-enough-for-hmac-sha256-xx"
OTHER_SECRET = "another-secret-long-enough-for-hmac-sha256"


def edged(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command as a person would, with no app secret in the environment unless given."""
    base = {k: v for k, v in os.environ.items() if k not in ("EDGED_APP_SECRET", "EDGED_APPS_FILE")}
    return subprocess.run(
        [sys.executable, "-m", "edged", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, "COLUMNS": "80", "NO_COLOR": "1", **(env or {})},
    )


def words(text: str) -> str:
    """The text with its line wrapping undone, as a reader takes it in."""
    return " ".join(text.split())


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr (no traceback, nothing on stdout)."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == ""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


RST_MARKUP = re.compile(r"``|:(class|func|meth|mod|attr|ref|doc):`|^\.\. ", re.MULTILINE)


def test_version() -> None:
    out = edged("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"edged {__version__}"


def test_help_is_plain_text_naming_every_command_file_and_variable() -> None:
    out = edged("--help")
    assert out.returncode == 0, out.stderr
    assert not RST_MARKUP.search(out.stdout), out.stdout
    text = words(out.stdout)
    assert text.startswith("usage: edged ")
    assert "headless participant of video-call rooms" in text
    for command in ("run", "check-config", "devices", "server", "token"):
        assert re.search(rf"^    {command} +\S", out.stdout, re.MULTILINE), command
    assert "/etc/edged/edged.yaml the daemon's configuration" in text
    assert "/var/lib/edged/apps.yaml the room server's app ids and secrets" in text
    assert "EDGED_APPS_FILE" in text and "EDGED_APP_SECRET" in text
    assert "--log-level LEVEL DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO;" in text


APPS_RULE = (
    "$EDGED_APPS_FILE if set, else /var/lib/edged/apps.yaml as root, else "
    "~/.local/state/edged/apps.yaml"
)


@pytest.mark.parametrize(
    ("command", "facts"),
    [
        (
            "run",
            [
                "--config FILE the YAML configuration file (default: /etc/edged/edged.yaml)",
                "inline, from a *_file or from a *_env variable",
                APPS_RULE,
                "SIGHUP reads the file again",
            ],
        ),
        (
            "check-config",
            [
                "FILE the YAML configuration file (default: /etc/edged/edged.yaml)",
                "exits 0",
                "exits 2",
            ],
        ),
        ("devices", ["--json print JSON instead of a table", "cameras", "sound cards"]),
        (
            "server",
            [
                "(default: 127.0.0.1)",
                "--port PORT TCP port (default: 8790)",
                "--app APP app to create in the apps file if absent (default: 'default')",
                "--heartbeat-interval S seconds between the heartbeats clients send (default: 10)",
                "before a client is dropped (default: 30)",
                "--apps FILE apps file (app_id: secret), created if absent (default here: {apps})",
                APPS_RULE,
                "--dev accept logins without a token",
                "--self-signed",
            ],
        ),
        (
            "token",
            [
                "--user ID user id (required)",
                "--app APP app id (default: 'default')",
                "--ttl S seconds the token is valid (default: 3600)",
                "--apps FILE apps file to read the secret from (default here: {apps})",
                "--secret-file FILE the file's contents",
                "$EDGED_APP_SECRET the environment variable",
                APPS_RULE,
            ],
        ),
    ],
)
def test_each_command_help_says_its_defaults_and_where_secrets_come_from(
    command: str, facts: list[str]
) -> None:
    apps = "/srv/edged/apps.yaml"  # named, not made: the help shows it, nothing reads it
    out = edged(command, "--help", env={"EDGED_APPS_FILE": apps})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: edged {command} ")
    assert not RST_MARKUP.search(out.stdout), out.stdout
    text = words(out.stdout)
    for fact in facts:
        assert fact.format(apps=apps) in text, (fact, out.stdout)


def test_token_with_a_missing_apps_file_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "apps.yaml"
    line = one_line_error(edged("token", "--apps", str(missing), "--user", "u"))
    assert line.startswith("edged: error 1007007 SECRET_UNAVAILABLE: ")
    assert f"apps file {missing} does not exist" in line
    assert "--secret-file FILE or $EDGED_APP_SECRET" in line


def test_token_without_apps_option_reads_the_apps_file_named_by_the_environment(
    tmp_path: Path,
) -> None:
    apps = tmp_path / "apps.yaml"
    line = one_line_error(edged("token", "--user", "u", env={"EDGED_APPS_FILE": str(apps)}))
    assert f"apps file {apps} does not exist" in line
    apps.write_text(f"default: {SECRET}\n")
    out = edged("token", "--user", "u", env={"EDGED_APPS_FILE": str(apps)})
    assert out.returncode == 0, out.stderr
    verify(out.stdout.strip(), SECRET, app_id="default", user_id="u")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["check-config", "{missing}"],
            "edged: error 1007001 CONFIG_FILE_NOT_FOUND: configuration file {missing} does not "
            "exist",
        ),
        (
            ["run", "--config", "{missing}"],
            "edged: error 1007001 CONFIG_FILE_NOT_FOUND: configuration file {missing} does not "
            "exist",
        ),
        (
            ["token", "--user", "u", "--secret-file", "{missing}"],
            "edged: error 1007007 SECRET_UNAVAILABLE: secret file {missing} does not exist",
        ),
        (
            ["check-config", "{dir}"],
            "edged: error 1007002 CONFIG_UNREADABLE: configuration file {dir} is a directory, "
            "not a file",
        ),
        (
            ["token", "--user", "u", "--apps", "{dir}"],
            "edged: error 1007007 SECRET_UNAVAILABLE: apps file {dir} is a directory, not a file",
        ),
        (
            ["token", "--user", "u", "--secret-file", "{dir}"],
            "edged: error 1007007 SECRET_UNAVAILABLE: secret file {dir} is a directory, not a file",
        ),
        (
            ["token", "--user", "u", "--secret-file", "{empty}"],
            "edged: error 1007007 SECRET_UNAVAILABLE: secret file {empty} is empty",
        ),
        (
            ["server", "--apps", "{under_file}"],
            "edged: error 1007007 SECRET_UNAVAILABLE: cannot create apps file {under_file}: ",
        ),
    ],
)
def test_a_file_that_cannot_be_used_is_one_clear_line(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    paths = {
        "missing": str(tmp_path / "missing.yaml"),
        "dir": str(tmp_path),
        "empty": str(empty),
        "under_file": str(empty / "apps.yaml"),
    }
    line = one_line_error(edged(*(a.format(**paths) for a in args)))
    assert line.startswith(expected.format(**paths)), line


def test_the_secret_comes_from_the_file_then_the_environment_then_the_apps_file(
    tmp_path: Path,
) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(f"default: {SECRET}\n")
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"\n{OTHER_SECRET}\n")
    third = "a-third-secret-long-enough-for-hmac-sha256"
    from_env = {"EDGED_APP_SECRET": third}

    def signed_with(out: subprocess.CompletedProcess[str]) -> str:
        assert out.returncode == 0, out.stderr
        for secret in (SECRET, OTHER_SECRET, third):
            try:
                verify(out.stdout.strip(), secret, app_id="default", user_id="u")
            except Exception:
                continue
            return secret
        raise AssertionError("signed with none of the secrets")

    base = ["token", "--user", "u", "--apps", str(apps)]
    assert signed_with(edged(*base, "--secret-file", str(secret_file), env=from_env)) == (
        OTHER_SECRET
    )
    assert signed_with(edged(*base, env=from_env)) == third
    assert signed_with(edged(*base)) == SECRET


def test_an_unknown_log_level_is_a_usage_error() -> None:
    out = edged("--log-level", "loud", "devices")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "argument --log-level: invalid choice: 'LOUD'" in out.stderr


def test_server_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = edged("server", "--port", str(port), "--apps", str(tmp_path / "apps.yaml"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == f"edged: error: cannot listen on 127.0.0.1:{port}: address already in use"


def test_server_refuses_a_relay_without_an_sfu_and_a_missing_sfu_secret(tmp_path: Path) -> None:
    apps = str(tmp_path / "apps.yaml")
    out = edged("server", "--apps", apps, "--relay", "auto")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "edged: error: --relay auto needs an SFU: give --sfu URL"
    )
    missing = tmp_path / "janus-secret"
    out = edged(
        "server", "--apps", apps, "--sfu", "ws://127.0.0.1:1/", "--sfu-secret-file", str(missing)
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"secret file {missing} does not exist" in out.stderr


def test_server_refuses_a_store_it_cannot_use(tmp_path: Path) -> None:
    apps = str(tmp_path / "apps.yaml")
    out = edged("server", "--apps", apps, "--store", "mysql://db/rooms")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "store must be memory or a redis:// URL, not 'mysql://db/rooms'" in out.stderr
    out = edged("server", "--apps", apps, "--store", "redis://127.0.0.1:1/0")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "needs the secret the nodes share" in out.stderr
    secret = tmp_path / "cluster-secret"
    secret.write_text("s3cret\n")
    out = edged(
        "server", "--apps", apps, "--store", "redis://127.0.0.1:1/0",
        "--cluster-secret-file", str(secret), "--node-id", "a.b",
    )  # fmt: skip
    assert out.returncode == 2 and "node id must be" in out.stderr, out.stderr


def test_server_refuses_a_port_out_of_range() -> None:
    out = edged("server", "--port", "70000")
    assert out.returncode == 2
    assert "argument --port: not a port number (1 to 65535): 70000" in out.stderr


def test_server_refuses_a_trusted_proxy_that_is_no_address() -> None:
    out = edged("server", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "10.0.0.300")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "argument --trusted-proxy:" in out.stderr and "10.0.0.300" in out.stderr


async def test_run_logs_at_the_level_its_configuration_file_sets(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    port = free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "auto": {"login": False},
                "video": {"source": "testpattern"},
                "audio": {"source": "tone"},
                "mqtt": {"enabled": False},
                "server": {"port": port, "apps_file": str(tmp_path / "apps.yaml")},
                "logging": {"level": "WARNING", "journald": False},
            }
        )
    )

    async def run(*options: str) -> str:
        notify_path = tmp_path / "notify.sock"
        notify_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            notify.setblocking(False)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edged",
                *options,
                "run",
                "--config",
                str(config),
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            )
            try:
                # READY=1 is sent just before daemon_ready is logged, with no await
                # between: once it is here, every start-up line is written or dropped.
                async with asyncio.timeout(20):
                    loop = asyncio.get_running_loop()
                    while b"READY=1" not in await loop.sock_recv(notify, 4096):
                        pass
            finally:
                proc.send_signal(signal.SIGINT)
                _, err = await proc.communicate()
        return err.decode()

    quiet = await run()
    assert quiet.startswith("edged "), quiet
    assert " INFO " not in quiet, quiet
    loud = await run("--log-level", "info")
    assert " INFO edged.daemon: daemon_ready" in loud, loud


def test_token_is_minted_from_the_apps_file(tmp_path: Path) -> None:
    apps = tmp_path / "apps.yaml"
    apps.write_text(f"home: {SECRET}\n")
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
        SECRET,
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
        await until(apps.exists, 10, interval=0.1)
        assert apps.stat().st_mode & 0o077 == 0, "the secret file must be private"
        secret = yaml.safe_load(apps.read_text())["home"]
        token = edged("token", "--apps", str(apps), "--app", "home", "--user", "u").stdout
        async with aiohttp.ClientSession() as http:

            async def connected() -> ProtoClient | None:
                with contextlib.suppress(aiohttp.ClientError):
                    return await ProtoClient(f"ws://127.0.0.1:{port}/ws", http).connect()
                return None

            client = await until(connected, 10, "the server to accept a WebSocket", interval=0.1)
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
