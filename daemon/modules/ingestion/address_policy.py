"""Which IP addresses a fetch may connect to (the SSRF guard's rule, pure).

A document ``url`` is fetched by the daemon, from inside the customer's network, on
behalf of whoever posted it. Without a rule, a URL could make the daemon read its own
admin endpoints, the cloud metadata service or any intranet host. So only *public*
addresses are allowed by default; every other address belongs to one of these classes:

=============  ==========================================================================
class          IPv4 / IPv6
=============  ==========================================================================
unspecified    0.0.0.0/8 / ``::``
loopback       127.0.0.0/8 / ``::1``
private        10/8, 172.16/12, 192.168/16 / fc00::/7 (ULA), fec0::/10, 64:ff9b:1::/48
link-local     169.254/16 (incl. 169.254.169.254) / fe80::/10
shared         100.64.0.0/10 (carrier-grade NAT)
multicast      224.0.0.0/4 / ff00::/8
broadcast      255.255.255.255
reserved       192.0.0/24, 192.88.99/24, 198.18/15, 240/4, documentation ranges
               / 100::/64, 2001::/23 (but Teredo), 2001:db8::/32, 3fff::/20, the
               deprecated IPv4-compatible ``::a.b.c.d``, and all outside 2000::/3
=============  ==========================================================================

IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
``::ffff:a.b.c.d``, IPv4-translated ``::ffff:0:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
``2002::/16`` and Teredo ``2001::/32`` (its client address), so ``::ffff:127.0.0.1`` is
as much loopback as ``127.0.0.1``.

:class:`AddressPolicy` allows an address when it is public, or lies in one of
``allowed_networks`` (checked first: an operator's explicit CIDR always wins), or when
``allow_private`` is set and its class is loopback, private, link-local or shared.
Cloud metadata addresses (:data:`METADATA_ADDRESSES`) stay refused under
``allow_private``: reading a VM's credentials is never what "fetch from the intranet"
means; list them in ``allowed_networks`` if it really is. Unspecified, multicast,
broadcast and reserved addresses are refused under ``allow_private`` too.

Everything here is pure; the caller (:mod:`.guarded_network`) applies the policy to every
address it is about to connect to, after its own DNS resolution.

:mod:`.egress_policy` adds the operator's egress allowlist on top of this rule: a second,
independent fence that only ever narrows what this rule allows.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import TYPE_CHECKING, TypeAlias

import attrs

from daemon.modules.ingestion.errors import FetchRefused

if TYPE_CHECKING:
    from collections.abc import Iterable

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressClass(enum.Enum):
    """A kind of non-public address; the value is its name in refusal messages."""

    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    SHARED = "shared (carrier-grade NAT)"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    RESERVED = "reserved"


PRIVATE_CLASSES: frozenset[AddressClass] = frozenset(
    {AddressClass.LOOPBACK, AddressClass.PRIVATE, AddressClass.LINK_LOCAL, AddressClass.SHARED}
)
"""The classes that ``allow_private`` lets through."""

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv6Address("fd00:ec2::254"),  # AWS over IPv6
    }
)
"""Cloud instance metadata services: refused even under ``allow_private``."""


def _table(*rows: tuple[str, AddressClass]) -> tuple[tuple[IPNetwork, AddressClass], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in rows)


# Checked in order: the first match wins (255.255.255.255 before 240/4).
_IPV4 = _table(
    ("0.0.0.0/8", AddressClass.UNSPECIFIED),
    ("10.0.0.0/8", AddressClass.PRIVATE),
    ("100.64.0.0/10", AddressClass.SHARED),
    ("127.0.0.0/8", AddressClass.LOOPBACK),
    ("169.254.0.0/16", AddressClass.LINK_LOCAL),
    ("172.16.0.0/12", AddressClass.PRIVATE),
    ("192.0.0.0/24", AddressClass.RESERVED),  # IETF protocol assignments
    ("192.0.2.0/24", AddressClass.RESERVED),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", AddressClass.RESERVED),  # 6to4 relay anycast (deprecated)
    ("192.168.0.0/16", AddressClass.PRIVATE),
    ("198.18.0.0/15", AddressClass.RESERVED),  # benchmarking
    ("198.51.100.0/24", AddressClass.RESERVED),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", AddressClass.RESERVED),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", AddressClass.MULTICAST),
    ("255.255.255.255/32", AddressClass.BROADCAST),
    ("240.0.0.0/4", AddressClass.RESERVED),
)
# Checked after the IPv4-carrying forms were unwrapped (see _embedded_ipv4).
_IPV6 = _table(
    ("::/128", AddressClass.UNSPECIFIED),
    ("::1/128", AddressClass.LOOPBACK),
    ("::/96", AddressClass.RESERVED),  # IPv4-compatible (deprecated)
    ("64:ff9b:1::/48", AddressClass.PRIVATE),  # local-use NAT64
    ("100::/64", AddressClass.RESERVED),  # discard-only
    ("2001:db8::/32", AddressClass.RESERVED),  # documentation
    ("2001::/23", AddressClass.RESERVED),  # IETF protocol assignments
    ("3fff::/20", AddressClass.RESERVED),  # documentation
    ("fc00::/7", AddressClass.PRIVATE),  # unique local
    ("fe80::/10", AddressClass.LINK_LOCAL),
    ("fec0::/10", AddressClass.PRIVATE),  # site-local (deprecated)
    ("ff00::/8", AddressClass.MULTICAST),
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv6 may carry a ``%zone``), or ``None`` if it is not a
    literal address (a host name, or a legacy form such as ``127.1``, which only the
    resolver understands)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bare(address: IPAddress) -> IPAddress:
    """``address`` without its IPv6 ``%zone`` (which makes it unequal to, and absent from
    sets of, the same address without one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries, and the form's name, if it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address.teredo is not None:
        return address.teredo[1], "Teredo"
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    bare = _bare(address)
    if bare in _NAT64:
        return low32, "NAT64"
    if bare in _IPV4_TRANSLATED:
        return low32, "IPv4-translated"
    return None


def classify_address(address: IPAddress) -> AddressClass | None:
    """The class of ``address``, or ``None`` when it is public (globally routable).

    An IPv6 form carrying an IPv4 address gets the class of that IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return classify_address(embedded[0])
        bare = _bare(address)
        for network, kind in _IPV6:
            if bare in network:
                return kind
        return None if bare in _GLOBAL_UNICAST else AddressClass.RESERVED
    for network, kind in _IPV4:
        if address in network:
            return kind
    return None


def _to_network(value: str | IPNetwork) -> IPNetwork:
    if isinstance(value, str):
        # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as in every firewall config.
        return ipaddress.ip_network(value, strict=False)
    return value


def parse_networks(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """CIDR strings (or network objects) as networks; host bits may be set.

    Raises:
        ValueError: a value is not a CIDR.
    """
    if isinstance(values, str):  # a lone CIDR, not an iterable of one-character strings
        values = (values,)
    return tuple(_to_network(value) for value in values)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@attrs.frozen(kw_only=True)
class AddressPolicy:
    """Which addresses a fetch may connect to (see the module docstring for the rule).

    ``allowed_networks`` takes CIDR strings (``"127.0.0.0/8"``, ``"fd12::/16"``) or
    network objects; a malformed CIDR raises ``ValueError`` when the policy is built.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = attrs.field(default=(), converter=parse_networks)

    def is_allowed_network(self, address: IPAddress) -> bool:
        """Whether ``address`` (or the IPv4 address its IPv6 form carries) lies in one of
        ``allowed_networks``."""
        candidates: list[IPAddress] = [_bare(address)]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                candidates.append(embedded[0])
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.allowed_networks
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused (``"127.0.0.1 is a loopback address"``), or ``None``
        when it is allowed."""
        if self.is_allowed_network(address):
            return None
        kind = classify_address(address)
        if kind is None:
            return None
        embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        target = embedded[0] if embedded is not None else _bare(address)
        metadata = target in METADATA_ADDRESSES or _bare(address) in METADATA_ADDRESSES
        if self.allow_private and kind in PRIVATE_CLASSES and not metadata:
            return None
        described = f"{_article(kind.value)} {kind.value} address"
        if embedded is not None:
            inner, form = embedded
            described = f"the {form} form of {inner}, {described}"
        return f"{address} is {described}" + (" (cloud metadata)" if metadata else "")

    def check(self, address: IPAddress) -> None:
        """Return if ``address`` is allowed.

        Raises:
            FetchRefused: it is not; the message names its class.
        """
        reason = self.refusal(address)
        if reason is not None:
            raise FetchRefused(f"refused: {reason}")
