"""The client address behind trusted reverse proxies. Pure.

Without trusted proxies the TCP peer is the client. With them, and only when the peer
is one of them, ``X-Forwarded-For`` is read from the right: each proxy appends the
address it received the request from, so the rightmost address that is not a trusted
proxy is the client. Everything to its left was written by the client and can be forged.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], networks: tuple[Network, ...]
) -> str | None:
    """The client's address; ``forwarded_for`` holds every ``X-Forwarded-For`` value in
    order (a header may appear several times)."""
    if peer is None or not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the chain: trust nothing of it
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
