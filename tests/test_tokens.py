"""Tokens: every refusal has its own code; renewal; warning; expiry kicks out."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from edged import tokens
from edged.errors import EdgedError, ErrorCode
from edged.tokens import mint, verify

from conftest import APP, SECRET, RunningServer, ServerFactory


def login_fields(user: str, token: str | None, room: str = "r1") -> dict[str, object]:
    fields: dict[str, object] = {"app_id": APP, "room_id": room, "user_id": user}
    if token is not None:
        fields["token"] = token
    return fields


REFUSALS = [
    ("missing", lambda: None, 1002043),
    ("garbage", lambda: "not-a-jwt", 1002033),
    ("wrong secret", lambda: mint("another-secret-of-sufficient-length!!", APP, "u", 60), 1002033),
    ("other app", lambda: mint(SECRET, "otherapp", "u", 60), 1002038),
    ("expired", lambda: mint(SECRET, APP, "u", 60, now=time.time() - 120), 1002042),
    ("other user", lambda: mint(SECRET, APP, "someone-else", 60), 1002039),
    ("other room", lambda: mint(SECRET, APP, "u", 60, room_id="r2"), 1002040),
    ("no login privilege", lambda: mint(SECRET, APP, "u", 60, can_login=False), 1002041),
    (
        "alg none",
        lambda: jwt.encode(
            {"app": APP, "sub": "u", "exp": time.time() + 60, "iss": "edged"},
            None,
            algorithm="none",
        ),
        1002033,
    ),
]


@pytest.mark.parametrize(("case", "make", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_login_refusals_have_distinct_codes(
    srv: RunningServer, case: str, make: object, code: int
) -> None:
    c = await srv.client()
    reply = await c.request("login", **login_fields("u", make()))  # type: ignore[operator]
    assert not reply["ok"]
    assert reply["error"]["code"] == code


async def test_unknown_app_is_refused(srv: RunningServer) -> None:
    c = await srv.client()
    reply = await c.request("login", app_id="nope", room_id="r1", user_id="u", token="x")
    assert reply["error"]["code"] == 1002037


async def test_dev_mode_accepts_logins_without_token(server_factory: ServerFactory) -> None:
    srv = await server_factory(dev_mode=True)
    c = await srv.client()
    result = await c.login(**login_fields("u", None))
    assert "token_expires_at" not in result  # a tokenless session never expires
    await c.ok("publish", stream_id="s")


async def test_room_bound_token_enters_its_room(srv: RunningServer) -> None:
    c = await srv.client()
    await c.login(**login_fields("u", mint(SECRET, APP, "u", 60, room_id="r1")))


async def test_publish_privilege_and_stream_ids(srv: RunningServer) -> None:
    viewer = await srv.client()
    await viewer.login(**login_fields("v", mint(SECRET, APP, "v", 60, can_publish=False)))
    assert (await viewer.request("publish", stream_id="s"))["error"]["code"] == 1003010

    cam = await srv.client()
    await cam.login(**login_fields("cam", mint(SECRET, APP, "cam", 60, stream_ids=["door"])))
    assert (await cam.request("publish", stream_id="garden"))["error"]["code"] == 1003011
    await cam.ok("publish", stream_id="door")


async def test_a_token_bounds_the_relay_policies_a_publish_may_ask_for(srv: RunningServer) -> None:
    cam = await srv.client()
    await cam.login(**login_fields("cam", mint(SECRET, APP, "cam", 60, relays=["p2p", "auto"])))
    refused = await cam.request("publish", stream_id="a", relay="sfu")
    assert refused["error"]["code"] == 1003012
    await cam.ok("publish", stream_id="b", relay="auto")
    await cam.ok("publish", stream_id="c")  # the server's own policy, whatever it is
    claims = verify(mint(SECRET, APP, "u", 60, relays=["p2p"]), SECRET, app_id=APP, user_id="u")
    assert claims.relays == {"p2p"}


async def test_warning_before_expiry_then_renewal_keeps_the_session(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(token_warning_s=1.0)
    c = await srv.client()
    await c.login(**login_fields("u", mint(SECRET, APP, "u", 2)))
    warning = await c.next_of("token_will_expire", timeout=3)
    assert 0 < warning["remaining_s"] <= 1.5
    renewed = await c.ok("renew_token", token=mint(SECRET, APP, "u", 60))
    assert renewed["token_expires_at"] > time.time() + 50
    # Stay past the first token's expiry (the time passing is what is tested): had its
    # timer survived the renewal, the kick is queued before the heartbeat's reply.
    await asyncio.sleep(max(0.0, c.login_result["token_expires_at"] - time.time()) + 0.2)
    assert await c.pushes_before_heartbeat() == []  # not kicked
    await c.ok("publish", stream_id="s")


async def test_renewal_with_another_users_token_is_refused(srv: RunningServer) -> None:
    c = await srv.user("u")
    reply = await c.request("renew_token", token=mint(SECRET, APP, "intruder", 60))
    assert reply["error"]["code"] == 1002039


async def test_unrenewed_expiry_kicks_out_and_tells_the_others(
    server_factory: ServerFactory,
) -> None:
    srv = await server_factory(token_warning_s=0.5)
    a = await srv.user("A")
    b = await srv.client()
    await b.login(**login_fields("B", mint(SECRET, APP, "B", 1.5)))
    await b.ok("publish", stream_id="s1")
    await a.next_of("room_user_update")
    await a.next_of("room_stream_update")
    await b.next_of("token_will_expire", timeout=3)
    kicked = await b.next_of("kicked_out", timeout=3)
    assert kicked["code"] == 1002056
    deleted = await a.next_of("room_stream_update")
    assert (deleted["update_type"], deleted["reason"]) == (1, "kicked")
    assert (await a.next_of("room_user_update"))["update_type"] == 1


def test_verify_names_each_problem() -> None:
    good = mint(SECRET, APP, "u", 60, room_id="r", stream_ids=["a", "b"])
    claims = verify(good, SECRET, app_id=APP, user_id="u", room_id="r")
    assert claims.stream_ids == frozenset({"a", "b"})
    assert claims.may_publish("a") is None
    assert claims.may_publish("c") == ErrorCode.STREAM_ID_NOT_ALLOWED
    with pytest.raises(EdgedError) as err:
        verify(good, SECRET, app_id=APP, user_id="u", room_id="other")
    assert err.value.code == ErrorCode.TOKEN_ROOM_MISMATCH
    with pytest.raises(EdgedError) as err:
        verify(good, SECRET, app_id=APP, user_id="u", room_id="r", now=time.time() + 61)
    assert err.value.code == ErrorCode.TOKEN_EXPIRED
    with pytest.raises(EdgedError) as err:
        mint(SECRET, APP, "u", 0)
    assert err.value.code == ErrorCode.INVALID_PARAMETER


def _raw_token(header: dict[str, object], claims: dict[str, object], secret: str = SECRET) -> str:
    def seg(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{seg(json.dumps(header).encode())}.{seg(json.dumps(claims).encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{seg(mac)}"


def _claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": "edged", "app": APP, "sub": "u", "iat": now, "exp": now + 60, **extra}


_HS256 = {"alg": "HS256", "typ": "JWT"}
_GOOD = mint(SECRET, APP, "u", 60)
_TOKEN_SHAPES = {
    "minted": lambda: _GOOD,
    "minted with room, privileges, streams": lambda: mint(
        SECRET, APP, "u", 60, room_id="r", can_publish=False, stream_ids=["a"]
    ),
    "no typ header": lambda: _raw_token({"alg": "HS256"}, _claims()),
    "kid header": lambda: _raw_token({**_HS256, "kid": "k1"}, _claims()),
    "HS512": lambda: jwt.encode(_claims(), SECRET, algorithm="HS512"),
    "aud claim": lambda: _raw_token(_HS256, _claims(aud="x")),
    "nbf in the future": lambda: _raw_token(_HS256, _claims(nbf=int(time.time()) + 30)),
    "iat in the future": lambda: _raw_token(_HS256, _claims(iat=int(time.time()) + 30)),
    "float iat": lambda: _raw_token(_HS256, _claims(iat=time.time())),
    "float exp": lambda: _raw_token(_HS256, _claims(exp=time.time() + 60)),
    "exp a string": lambda: _raw_token(_HS256, _claims(exp="soon")),
    "sub a number": lambda: _raw_token(_HS256, _claims(sub=7)),
    "app a number": lambda: _raw_token(_HS256, _claims(app=7)),
    "other issuer": lambda: _raw_token(_HS256, _claims(iss="other")),
    "no exp": lambda: _raw_token(_HS256, {k: v for k, v in _claims().items() if k != "exp"}),
    "priv not an object": lambda: _raw_token(_HS256, _claims(priv=[1])),
    "jti claim": lambda: _raw_token(_HS256, _claims(jti="j")),
    "payload a list": lambda: _raw_token(_HS256, [1, 2]),  # type: ignore[arg-type]
    "bad signature": lambda: _GOOD[:-2] + ("AA" if not _GOOD.endswith("AA") else "BB"),
    "padded segment": lambda: _GOOD + "=",
    "non-canonical signature": lambda: _GOOD[:-1] + chr(ord(_GOOD[-1]) ^ 1),
    "two segments": lambda: _GOOD.rsplit(".", 1)[0],
    "other app, same secret": lambda: mint(SECRET, "otherapp", "u", 60),
    "other app, other secret": lambda: mint("x" * 40, "otherapp", "u", 60),
    "no login privilege": lambda: mint(SECRET, APP, "u", 60, can_login=False),
}


@pytest.mark.filterwarnings("ignore:The HMAC key")
@pytest.mark.parametrize("shape", list(_TOKEN_SHAPES))
def test_fast_verification_agrees_with_pyjwt(shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens shaped like mint's skip PyJWT; every token gets the verdict PyJWT gives."""
    token = _TOKEN_SHAPES[shape]()

    def outcome() -> object:
        try:
            return verify(token, SECRET, app_id=APP, user_id="u", room_id="r")
        except EdgedError as exc:
            return (exc.code, exc.message)

    fast = outcome()
    monkeypatch.setattr(tokens, "_plain_claims", lambda *args: None)
    assert fast == outcome()


def test_minted_tokens_take_the_fast_path() -> None:
    now = time.time()
    token = mint(SECRET, APP, "u", 60, room_id="r", stream_ids=["a"], now=now)
    claims = tokens._plain_claims(token, SECRET, now)
    assert claims == jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert tokens._plain_claims(token, "another-secret-of-sufficient-length!!", now) is None


def test_room_token_is_bound_to_its_user_and_room_and_needs_a_secret() -> None:
    token = tokens.room_token(SECRET, APP, "cam", "porch", 60)
    assert token is not None
    claims = verify(token, SECRET, app_id=APP, user_id="cam", room_id="porch")
    assert (claims.app_id, claims.user_id) == (APP, "cam")
    with pytest.raises(EdgedError) as refused:
        verify(token, SECRET, app_id=APP, user_id="cam", room_id="garden")
    assert refused.value.code == ErrorCode.TOKEN_ROOM_MISMATCH
    assert tokens.room_token(None, APP, "cam", "porch", 60) is None
    assert tokens.room_token("", APP, "cam", "porch", 60) is None
