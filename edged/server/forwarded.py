"""The client's own address behind a load balancer or reverse proxy.

The room server counts its per-address limits (connections, messages, connects per
second) by the address a socket comes from. Behind a load balancer that address is the
balancer's for every client, so ``X-Forwarded-For`` is read instead, but only when the
peer that sent it is one of the proxies the operator names (``--trusted-proxy``,
``server.trusted_proxies``): walked from the right, past every hop that is itself a
trusted proxy, the first other address is the client's. A client's own entries lie left
of what its proxy appended, so it cannot choose the address its limits are counted under;
without trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = "X-Forwarded-For"


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse addresses and networks (``10.0.0.5``, ``10.0.0.0/24``, ``fd00::/8``);
    ValueError names the first that is neither."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(networks)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted)


def client_address(
    remote: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The address a connection's limits are counted under (see the module's text)."""
    address = remote or "unknown"
    if not forwarded_for or not _trusted(address, trusted):
        return address
    for hop in reversed(forwarded_for.split(",")):
        address = hop.strip()
        if not _trusted(address, trusted):
            break
    return address or (remote or "unknown")
