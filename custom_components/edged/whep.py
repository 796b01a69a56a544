"""A WHEP client for one viewer at a time: ``POST`` the offer, ``PATCH`` trickled
candidates, ``DELETE`` at the end (draft-ietf-wish-whep, as docs/whep.md serves it).

Small and written here because nothing Home Assistant ships speaks WHEP from Python
(go2rtc's client is Go, inside its add-on binary), and the integration may not add
requirements of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=15)


class WhepError(Exception):
    """The endpoint refused (``code``: edged's error code or ``http_<status>``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def rebase(url: str, server_url: str | None) -> str:
    """``url`` with its scheme and host replaced by those of ``server_url`` when given
    (the device names its server as it reaches it, which may not be how HA does)."""
    if not server_url:
        return url
    target, base = urlsplit(url), urlsplit(server_url)
    return urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))


def media_ids(offer_sdp: str) -> list[str | None]:
    """The ``a=mid`` of each m-section, in order (None where a section has none)."""
    mids: list[str | None] = []
    for line in offer_sdp.splitlines():
        if line.startswith("m="):
            mids.append(None)
        elif line.startswith("a=mid:") and mids:
            mids[-1] = line[len("a=mid:") :]
    return mids


def ice_credentials(offer_sdp: str) -> tuple[str, str]:
    """The offer's ``ice-ufrag`` and ``ice-pwd`` (session or first media level)."""
    ufrag = pwd = ""
    for line in offer_sdp.splitlines():
        if line.startswith("a=ice-ufrag:") and not ufrag:
            ufrag = line[len("a=ice-ufrag:") :]
        elif line.startswith("a=ice-pwd:") and not pwd:
            pwd = line[len("a=ice-pwd:") :]
    return ufrag, pwd


def sdpfrag(ufrag: str, pwd: str, mid: str | None, candidate: str) -> str:
    """One trickled candidate as ``application/trickle-ice-sdpfrag`` (RFC 8840)."""
    line = candidate if candidate.startswith("candidate:") else f"candidate:{candidate}"
    lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", "m=audio 9 UDP/TLS/RTP/SAVPF 0"]
    if mid is not None:
        lines.append(f"a=mid:{mid}")
    lines.append(f"a={line}")
    return "\r\n".join(lines) + "\r\n"


@dataclass(slots=True)
class WhepSession:
    """One played resource: where it lives and the offer's ICE credentials."""

    http: aiohttp.ClientSession
    url: str = ""
    token: str = ""
    location: str = ""
    etag: str | None = None
    ufrag: str = ""
    pwd: str = ""
    answer: str = ""
    mids: list[str | None] = field(default_factory=list)
    pending: list[tuple[str | None, str, int | None]] = field(default_factory=list)

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, offer_sdp: str) -> str:
        """Send the offer; the answer (``201``) or :class:`WhepError`."""
        self.ufrag, self.pwd = ice_credentials(offer_sdp)
        self.mids = media_ids(offer_sdp)
        headers = {**self._auth, "Content-Type": "application/sdp"}
        async with self.http.post(
            self.url, data=offer_sdp, headers=headers, timeout=TIMEOUT
        ) as res:
            body = await res.text()
            if res.status != 201:
                raise _refusal(res.status, body, res.headers.get("Retry-After"))
            self.location = urljoin(self.url, res.headers.get("Location", ""))
            self.etag = res.headers.get("ETag")
        self.answer = body
        for mid, candidate, index in self.pending:
            await self.trickle(mid, candidate, index)
        self.pending.clear()
        return body

    def mid_of(self, mid: str | None, index: int | None) -> str | None:
        """The candidate's mid: given, or that of its m-line index in the offer."""
        if mid is None and index is not None and 0 <= index < len(self.mids):
            return self.mids[index]
        return mid

    async def trickle(self, mid: str | None, candidate: str, index: int | None = None) -> None:
        """Send one candidate (kept until the resource exists)."""
        if not candidate:
            return  # end of candidates: nothing the endpoint needs
        if not self.location:
            self.pending.append((mid, candidate, index))
            return
        headers = {**self._auth, "Content-Type": "application/trickle-ice-sdpfrag"}
        if self.etag:
            headers["If-Match"] = self.etag
        body = sdpfrag(self.ufrag, self.pwd, self.mid_of(mid, index), candidate)
        async with self.http.patch(
            self.location, data=body, headers=headers, timeout=TIMEOUT
        ) as res:
            if res.status not in (200, 204):
                raise _refusal(res.status, await res.text(), None)

    async def delete(self) -> None:
        """End the resource (the viewer leaves the room at once)."""
        if not self.location:
            return
        async with self.http.delete(self.location, headers=self._auth, timeout=TIMEOUT):
            self.location = ""


def _refusal(status: int, body: str, retry_after: str | None) -> WhepError:
    """The endpoint's problem (RFC 9457, with edged's ``code``) as a :class:`WhepError`."""
    code, detail = f"http_{status}", body.strip()[:200]
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        code = str(problem.get("code", code))
        words = [str(problem[k]) for k in ("name", "title", "detail") if problem.get(k)]
        detail = ": ".join(words) or detail
    if status == 409 and retry_after:
        detail = f"{detail} (not published yet; retry in {retry_after} s)"
    return WhepError(code, detail or f"HTTP {status}")
