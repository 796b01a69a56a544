"""Resolving the mDNS ``.local`` host names browsers put in their ICE candidates.

A browser that has no camera or microphone permission hides its addresses behind
random ``<uuid>.local`` names (draft-ietf-mmusic-mdns-ice-candidates) and answers
multicast DNS queries for them. aioice resolves such names itself, but parses the
answers with dnspython, which refuses the whole answer Chromium sends: its NSEC record
carries a compressed name (allowed by RFC 6762, section 18.14, forbidden by DNSSEC's
rules that dnspython applies), so the name stays unresolved and the call depends on
peer-reflexive discovery. :func:`resolve` asks on every IPv4 interface and reads only
the A records of the answers, so a candidate reaches aioice with its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time

import ifaddr

log = logging.getLogger("edged.engine")

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
TYPE_A = 1
CLASS_IN = 1
CACHE_S = 120.0  # the TTL browsers give their names
_NAME = re.compile(r"^[A-Za-z0-9-]{1,63}\.local\.?$")
_cache: dict[str, tuple[str, float]] = {}


def is_mdns_name(host: str) -> bool:
    """Whether ``host`` is a single-label ``.local`` name (what browsers use)."""
    return _NAME.match(host) is not None


def build_query(name: str) -> bytes:
    """A multicast DNS query (id 0, no flags) for the A record of ``name``."""
    header = struct.pack("!6H", 0, 0, 1, 0, 0, 0)
    labels = b"".join(
        bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".")
    )
    return header + labels + b"\x00" + struct.pack("!2H", TYPE_A, CLASS_IN)


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    """The (possibly compressed) name at ``offset`` and the offset just after it."""
    labels: list[str] = []
    end = None
    for _ in range(64):  # bounds pointer loops
        length = packet[offset]
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        if length >= 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            continue
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise ValueError("name too long")


def parse_addresses(packet: bytes, name: str) -> list[str]:
    """IPv4 addresses a DNS response gives for ``name`` (answers and additional records)."""
    wanted = name.rstrip(".").lower()
    try:
        _, flags, questions, *counts = struct.unpack_from("!6H", packet)
        if not flags & 0x8000:  # a query, not a response
            return []
        offset = 12
        for _ in range(questions):
            offset = _read_name(packet, offset)[1] + 4
        found: list[str] = []
        for _ in range(sum(counts)):
            owner, offset = _read_name(packet, offset)
            rtype, _rclass, _ttl, length = struct.unpack_from("!2HIH", packet, offset)
            offset += 10
            if rtype == TYPE_A and length == 4 and owner.lower() == wanted:
                found.append(socket.inet_ntoa(packet[offset : offset + 4]))
            offset += length
        return found
    except (IndexError, ValueError, struct.error):
        return []


def _interface_addresses() -> list[str]:
    addresses = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                addresses.append(ip.ip)
    return addresses


def _open_socket(interfaces: list[str]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", MDNS_PORT))  # responders answer to the group's port, not to ours
        group = socket.inet_aton(MDNS_GROUP)
        for address in interfaces or ["0.0.0.0"]:
            with contextlib.suppress(OSError):
                membership = group + socket.inet_aton(address)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Listener(asyncio.DatagramProtocol):
    """Completes ``future`` with the first address an answer gives for ``name``."""

    def __init__(self, name: str, future: asyncio.Future[str]) -> None:
        self.name = name
        self.future = future

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        addresses = parse_addresses(data, self.name)
        if addresses and not self.future.done():
            self.future.set_result(addresses[0])


async def resolve(name: str, timeout: float = 1.0, attempts: int = 2) -> str | None:
    """The IPv4 address of the mDNS ``name``, or None when nobody answers in time.

    The query goes out on every IPv4 interface; an answer is kept for two minutes.
    """
    key = name.rstrip(".").lower()
    cached = _cache.get(key)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    loop = asyncio.get_running_loop()
    interfaces = _interface_addresses()
    try:
        sock = _open_socket(interfaces)
    except OSError as exc:
        log.info("mDNS: cannot listen on port %d: %s", MDNS_PORT, exc)
        return None
    future: asyncio.Future[str] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(key, future), sock=sock)
    query = build_query(key)
    senders: list[str | None] = [*interfaces] or [None]
    try:
        for _ in range(attempts):
            for address in senders:
                with contextlib.suppress(OSError):
                    if address is not None:
                        sock.setsockopt(
                            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address)
                        )
                    sock.sendto(query, (MDNS_GROUP, MDNS_PORT))
            with contextlib.suppress(TimeoutError):
                result = await asyncio.wait_for(asyncio.shield(future), timeout / attempts)
                _cache[key] = (result, time.monotonic() + CACHE_S)
                return result
        return None
    finally:
        transport.close()
