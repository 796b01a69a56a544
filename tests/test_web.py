"""The web client's server side: the page and its API, join links, HTTPS, mDNS answers.

The page itself, in Chromium, is tested in test_web_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from browser import Chromium

from edged.errors import ERRORS, EdgedError, ErrorCode
from edged.server import tls
from edged.server.run import run_server
from edged.server.settings import ServerSettings
from edged.server.webapp import DEV_TOKEN_TTL_S, WEB_DIR, join_url
from edged.testing.waiting import until
from edged.tokens import verify

from conftest import APP, SECRET, RunningServer, ServerFactory, free_port
from pagekit import page_url

pytest_plugins = ["pagekit"]  # fixture `chromium`


# ---- the page and its API -----------------------------------------------------------


async def test_the_page_and_its_scripts_are_served_with_a_strict_policy(
    srv: RunningServer,
) -> None:
    base = page_url(srv)
    async with srv.http.get(f"{base}/") as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert page.headers["Referrer-Policy"] == "no-referrer"  # join links carry tokens
    assert '<script type="module" src="/web/app.js">' in html
    scripts = sorted(p.name for p in WEB_DIR.glob("*.js"))
    assert {"app.js", "call.js", "protocol.js", "links.js", "timecode.js"} <= set(scripts)
    for name in scripts:
        async with srv.http.get(f"{base}/web/{name}") as script:
            assert script.status == 200, name
            assert script.content_type == "text/javascript"
    async with srv.http.get(f"{base}/web/style.css") as style:
        assert style.content_type == "text/css"


@pytest.mark.parametrize("path", ["/web/..%2Fwebapp.py", "/web/missing.js", "/web/.hidden.js"])
async def test_nothing_but_the_page_files_is_served(srv: RunningServer, path: str) -> None:
    async with srv.http.get(f"{page_url(srv)}{path}") as response:
        assert response.status == 404


async def test_config_names_the_apps_and_the_configured_ice_servers(
    server_factory: ServerFactory,
) -> None:
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}
    srv = await server_factory(ice_servers=[turn])
    async with srv.http.get(f"{page_url(srv)}/api/config") as response:
        config = await response.json()
    assert config["apps"] == [APP]
    assert config["ice_servers"] == [turn]
    assert config["dev_mode"] is False
    assert SECRET not in str(config)


async def test_every_error_code_is_explained_to_the_page(srv: RunningServer) -> None:
    async with srv.http.get(f"{page_url(srv)}/api/errors") as response:
        table = {e["code"]: e for e in (await response.json())["errors"]}
    assert set(table) == {int(code) for code in ErrorCode}
    kicked = table[int(ErrorCode.KICKED_OUT)]
    assert kicked["name"] == "KICKED_OUT"
    assert kicked["meaning"] == ERRORS[ErrorCode.KICKED_OUT].meaning
    assert kicked["remedy"] == ERRORS[ErrorCode.KICKED_OUT].remedy


async def test_development_tokens_exist_only_in_development_mode(
    server_factory: ServerFactory,
) -> None:
    body = {"app_id": APP, "room_id": "lab", "user_id": "tester"}
    off = await server_factory()
    async with off.http.post(f"{page_url(off)}/api/dev-token", json=body) as response:
        assert response.status == 404
    on = await server_factory(dev_mode=True)
    async with on.http.post(f"{page_url(on)}/api/dev-token", json=body) as response:
        assert response.status == 200
        minted = await response.json()
    claims = verify(minted["token"], SECRET, app_id=APP, user_id="tester", room_id="lab")
    assert claims.room_id == "lab"  # good for the test room only
    assert claims.expires_at - minted["expires_at"] < 5
    assert minted["expires_at"] - claims.expires_at < 5
    with pytest.raises(EdgedError) as refused:
        verify(minted["token"], SECRET, app_id=APP, user_id="tester", room_id="other")
    assert refused.value.code == ErrorCode.TOKEN_ROOM_MISMATCH
    assert DEV_TOKEN_TTL_S <= 3600


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"app_id": APP, "room_id": "lab", "user_id": "bad id"}, 400),
        ({"app_id": APP, "room_id": "", "user_id": "tester"}, 400),
        ({"app_id": "nope", "room_id": "lab", "user_id": "tester"}, 404),
        ([], 400),
    ],
)
async def test_development_tokens_need_valid_ids(
    server_factory: ServerFactory, body: object, status: int
) -> None:
    srv = await server_factory(dev_mode=True)
    async with srv.http.post(f"{page_url(srv)}/api/dev-token", json=body) as response:
        assert response.status == status
        assert (await response.json())["error"]["code"] in (1000001, 1002037)


def test_a_join_link_fills_the_page_fields() -> None:
    link = join_url("https://door.local:8790/", "default", "porch", "t.o.k", user_id="guest")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "door.local:8790", "/")
    query = parse_qs(parts.query)
    assert query == {"app": ["default"], "room": ["porch"], "user": ["guest"], "token": ["t.o.k"]}
    assert "user=" not in join_url("http://h:1", "a", "r", "t")


# ---- HTTPS ----------------------------------------------------------------------------


def test_a_self_signed_certificate_is_made_once_and_then_reused(tmp_path: Path) -> None:
    names = ["door", "door.local", "localhost", "127.0.0.1"]
    cert, key = tls.self_signed_certificate(tmp_path / "tls", names)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    text = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for expected in ("DNS:door.local", "DNS:localhost", "IP Address:127.0.0.1", "CA:TRUE"):
        assert expected in text
    tls.ssl_context(cert, key)
    first = tls.fingerprint(cert)
    assert len(first.split(":")) == 32
    assert tls.self_signed_certificate(tmp_path / "tls", names[:2]) == (cert, key)
    assert tls.fingerprint(cert) == first  # trusted once, kept
    tls.self_signed_certificate(tmp_path / "tls", [*names, "door.example.org"])
    assert tls.fingerprint(cert) != first  # a new name needs a new certificate


def test_without_openssl_the_python_cryptography_package_makes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls.shutil, "which", lambda name: None)
    cert, key = tls.self_signed_certificate(tmp_path, ["localhost", "127.0.0.1"])
    context = tls.ssl_context(cert, key)
    assert isinstance(context, ssl.SSLContext)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_the_public_key_hash_matches_openssl(tmp_path: Path) -> None:
    cert, _ = tls.self_signed_certificate(tmp_path, ["localhost"])
    pipeline = (
        f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der"
        " | openssl dgst -sha256 -binary | base64"
    )
    expected = subprocess.run(pipeline, shell=True, capture_output=True, text=True, check=True)
    assert tls.spki_sha256(cert) == expected.stdout.strip()


def test_a_broken_certificate_is_refused_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate")
    with pytest.raises(EdgedError) as refused:
        tls.ssl_context(tmp_path / "c.pem", tmp_path / "c.pem")
    assert refused.value.code == ErrorCode.TLS_CERTIFICATE_INVALID
    with pytest.raises(EdgedError):
        tls.server_ssl_context(ServerSettings(cert_file=str(tmp_path / "c.pem")))
    assert tls.server_ssl_context(ServerSettings()) is None


@contextlib.asynccontextmanager
async def https_server(tmp_path: Path, **settings: object) -> AsyncIterator[str]:
    cert, key = tls.self_signed_certificate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    port = free_port()
    config = ServerSettings(
        apps={APP: SECRET}, port=port, cert_file=str(cert), key_file=str(key), **settings
    )  # type: ignore[arg-type]
    task = asyncio.create_task(run_server(config))
    trusting = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as http:
        await _first_answer(http, f"https://localhost:{port}/healthz", trusting)
    try:
        yield f"https://localhost:{port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _first_answer(http: aiohttp.ClientSession, url: str, trusting: ssl.SSLContext) -> int:
    """The status of ``url`` once the server listens (it prints before it binds)."""

    async def answer() -> int | None:
        with contextlib.suppress(aiohttp.ClientConnectorError):
            async with http.get(url, ssl=trusting) as response:
                return response.status
        return None

    return await until(answer, 20, f"{url} to answer", interval=0.1)


async def test_the_server_speaks_https_and_wss_with_its_certificate(tmp_path: Path) -> None:
    async with https_server(tmp_path) as base:
        cert = tmp_path / "tls" / tls.CERT_NAME
        trusting = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/", ssl=trusting) as page:
                assert page.status == 200
            ws_url = base.replace("https://", "wss://") + "/ws"
            async with http.ws_connect(ws_url, ssl=trusting) as ws:
                await ws.send_json({"type": "heartbeat", "id": 1})
                reply = await ws.receive_json(timeout=5)
                assert reply["error"]["code"] == ErrorCode.NOT_LOGGED_IN
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"{base}/", ssl=ssl.create_default_context())


@pytest.mark.netns
async def test_chromium_trusting_the_certificate_gets_a_secure_page_and_a_camera(
    tmp_path: Path, chromium: Chromium
) -> None:
    async with https_server(tmp_path) as base:
        spki = tls.spki_sha256(tmp_path / "tls" / tls.CERT_NAME)
        page = await chromium.page(extra_args=(f"--ignore-certificate-errors-spki-list={spki}",))
        await page.open(base, app=APP, room="r1", user="alice", token=_token("alice"))
        assert await page.evaluate("() => window.isSecureContext")
        assert await page.page.input_value("#server") == base.replace("https://", "wss://") + "/ws"
        await page.join()
        await page.wait_room("CONNECTED", "LOGINED")
        await page.publish("camera")


def _token(user: str) -> str:
    from edged.tokens import mint

    return mint(SECRET, APP, user, 600, room_id="r1")


async def test_edged_server_self_signed_prints_a_join_link_that_logs_in(tmp_path: Path) -> None:
    apps = tmp_path / "state" / "apps.yaml"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged", "server", "--host", "127.0.0.1", "--port", str(port),
        "--apps", str(apps), "--app", "home", "--self-signed",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not any("join link" in line for line in lines):
                lines.append((await proc.stderr.readline()).decode())
        link = next(line for line in lines if "join link" in line).split(": ", 1)[1].strip()
        assert link.startswith(f"https://127.0.0.1:{port}/?")
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert (query["app"], query["user"]) == ("home", "guest")
        cert = tmp_path / "state" / "tls" / tls.CERT_NAME
        assert any(tls.fingerprint(cert) in line for line in lines)
        trusting = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            status = await _first_answer(http, link, trusting)
            assert status == 200
            ws_url = f"wss://127.0.0.1:{port}/ws"
            async with http.ws_connect(ws_url, ssl=trusting) as ws:
                login = {"type": "login", "id": 1, "app_id": "home", "room_id": query["room"],
                         "user_id": "guest", "token": query["token"]}  # fmt: skip
                await ws.send_json(login)
                reply = await ws.receive_json(timeout=5)
                assert reply["ok"], reply
    finally:
        proc.terminate()
        await proc.wait()
