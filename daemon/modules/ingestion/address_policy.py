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

:class:`EgressPolicy` is the operator's egress allowlist (``TRIAGED_FETCH_EGRESS_NETWORKS``):
a second, independent fence that only ever narrows what the rule above allows. Its
entries are CIDRs (IP literals inside them are allowed) and host names (exactly those
names are allowed). It is judged on the URL's host *before* any DNS query: a name that
no host entry lists is refused without being resolved, except ``localhost``, which the
system resolver answers from ``/etc/hosts`` and which is allowed only if every address it
resolves to lies in a CIDR entry. Legacy numeric spellings (``127.1``, ``0x7f.1``,
``2130706433``) are IPv4 literals here, parsed as the resolver and WHATWG URL parsers
do, so they never reach DNS either. See ``docs/egress.md``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import attrs

from daemon.shared.errors import FetchRefused

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


# --- the egress allowlist --------------------------------------------------------------

LOCALHOST = "localhost"
"""The one name resolved although no host entry lists it (see :class:`EgressPolicy`)."""

# A host name as it appears in a URL once IDNA-encoded and lower-cased ("_" occurs in
# the wild), without its trailing dot; at most 253 characters.
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
# WHATWG URL "ends in a number": the last label is decimal digits, or 0x and hex digits.
_NUMBER_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


def normalized_host(host: str) -> str:
    """``host`` as the allowlist compares it: lower-case, without IPv6 brackets and
    without the trailing dot of a fully qualified name (``Docs.Example.`` and
    ``docs.example`` are the same name)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host[:-1] if host.endswith(".") and not host.endswith("..") else host


def ends_in_number(host: str) -> bool:
    """Whether ``host`` (normalized) is meant as an IPv4 address in one of the legacy
    numeric forms: its last label is a number (WHATWG URL standard, "ends in a number")."""
    return _NUMBER_LABEL.fullmatch(host.rsplit(".", 1)[-1]) is not None


def parse_numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` (normalized) as an IPv4 address in the forms ``inet_aton`` and the WHATWG
    URL parser accept: one to four parts, each decimal, octal (leading ``0``) or hex
    (``0x``), the last filling the remaining bytes: ``127.1``, ``0x7f.1``,
    ``2130706433``, ``0177.0.0.1``. ``None`` if it is not such a form."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2] in ("0x", "0X"):
                numbers.append(int(part[2:], 16) if len(part) > 2 else 0)
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:  # empty, non-digits, 08, a sign, "_" separators...
            return None
        if not part.isascii() or not part.isalnum():
            return None  # int() also takes "+1", " 1" and Unicode digits
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def host_address(host: str) -> IPAddress | None:
    """The IP address ``host`` (as in a URL) denotes by itself, without DNS: an IPv4 or
    IPv6 literal (brackets, ``%zone`` allowed) or a legacy numeric IPv4 form; ``None``
    for a host name (or a number form that is not a valid address)."""
    host = normalized_host(host)
    literal = parse_address(host)
    if literal is not None:
        return literal
    return parse_numeric_ipv4(host) if ends_in_number(host) else None


def _egress_entry(entry: str) -> IPNetwork | str:
    """One allowlist entry as a network (a CIDR or a lone address) or a host name.

    Raises:
        ValueError: neither (wildcards such as ``*.example.org`` included).
    """
    text = normalized_host(entry)
    if not text:
        raise ValueError("an empty egress allowlist entry")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if len(text) > 253 or not _NAME.fullmatch(text) or ends_in_number(text):
        raise ValueError(
            f"not a CIDR, an IP address or a host name (ASCII, IDNA-encoded): {entry!r}"
        )
    return text


def _egress_entries(entries: str | Iterable[str]) -> Iterable[str]:
    if isinstance(entries, str):
        return [item for item in entries.split(",") if item.strip()]
    return entries


@attrs.frozen(kw_only=True)
class EgressPolicy:
    """The egress allowlist: the only places outbound requests may go.

    A reusable policy object: :class:`~.guarded_network.GuardedBackend` takes one (as
    ``egress=``), so any client built on that backend (document fetches today; sources
    and notifications later) is confined the same way. Build it with :meth:`parse`.

    - ``networks``: CIDRs. An IP literal host (any spelling, see :func:`host_address`)
      is allowed if it lies in one; so is an IPv4-mapped IPv6 address
      (``::ffff:127.0.0.1``) whose IPv4 address does, since the kernel delivers it to
      that IPv4 address. Other IPv6 forms carrying an IPv4 address (6to4, NAT64,
      Teredo) are routed elsewhere and are judged as the IPv6 addresses they are.
    - ``hosts``: host names, allowed by name (whatever they resolve to; the SSRF guard
      still vets those addresses).
    - Any other name is refused *without being resolved*, except ``localhost`` when
      there are networks: it is resolved (``/etc/hosts``, no DNS query leaves the host)
      and allowed only if every address lies in a network.

    Pure and immutable; it never resolves anything itself.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> EgressPolicy:
        """The policy of ``entries``: a comma-separated string or an iterable of
        entries, each a CIDR, an IP address (its own /32 or /128; IPv6 may be in
        brackets) or a host name (case and a trailing dot do not matter).

        Raises:
            ValueError: an entry is malformed, or there is none (an empty allowlist is
                no allowlist: use ``None``, see :func:`egress_policy`).
        """
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in _egress_entries(entries):
            parsed = _egress_entry(entry)
            if isinstance(parsed, str):
                hosts.add(parsed)
            elif parsed not in networks:
                networks.append(parsed)
        if not networks and not hosts:
            raise ValueError("an egress allowlist needs at least one entry")
        return cls(networks=tuple(networks), hosts=frozenset(hosts))

    def lists_host(self, host: str) -> bool:
        """Whether a host entry names ``host`` (then it is allowed by name)."""
        return normalized_host(host) in self.hosts

    def address_refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` is outside the allowlist, or ``None`` if a network holds it."""
        candidates: list[IPAddress] = [_bare(address)]
        shown = str(address)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
            shown = f"{address} (the IPv4-mapped form of {address.ipv4_mapped})"
        for candidate in candidates:
            for network in self.networks:
                if candidate.version == network.version and candidate in network:
                    return None
        return f"{shown} is outside the egress allowlist"

    def host_refusal(self, host: str) -> str | None:
        """Why ``host`` (a URL's host: IDNA-encoded name or IP literal) may not be
        contacted, decided without DNS; ``None`` if it may, or if it may once resolved
        (``localhost``, see :meth:`must_check_addresses`)."""
        name = normalized_host(host)
        if name in self.hosts:
            return None
        address = host_address(name)
        if address is not None:
            return self.address_refusal(address)
        if ends_in_number(name):
            return f"{host!r} is not a valid IPv4 address"
        if name == LOCALHOST and self.networks:
            return None
        return f"host {name!r} is outside the egress allowlist (not resolved)"

    def must_check_addresses(self, host: str) -> bool:
        """Whether the addresses ``host`` resolves to must each be checked with
        :meth:`resolved_refusal` (a name allowed only through the networks)."""
        return not self.lists_host(host) and host_address(host) is None

    def resolved_refusal(self, host: str, addresses: Iterable[IPAddress]) -> str | None:
        """Why the name ``host``, resolved to ``addresses``, may not be contacted: one
        address outside the networks refuses the name (a name half inside is no more
        trusted than DNS rebinding allows). ``None`` if it may."""
        if self.lists_host(host):
            return None
        for address in addresses:
            reason = self.address_refusal(address)
            if reason is not None:
                return f"{reason} (resolved from {host!r})"
        return None

    def url_refusal(self, url: str) -> str | None:
        """Why a configured URL (e.g. a model server's) falls outside the allowlist,
        judged without DNS (``localhost`` counts as inside when a network is listed);
        ``None`` if it is inside. For start-up warnings, not for enforcement."""
        host = urlsplit(url).hostname
        if not host:
            return "the URL has no host"
        return self.host_refusal(host)


def egress_policy(value: EgressPolicy | str | Iterable[str] | None) -> EgressPolicy | None:
    """``value`` as an optional :class:`EgressPolicy`: ``None``, an empty string or no
    entries mean "no allowlist" (``None``); entries are parsed with
    :meth:`EgressPolicy.parse` (``ValueError`` if malformed)."""
    if value is None or isinstance(value, EgressPolicy):
        return value
    entries = list(_egress_entries(value))
    return EgressPolicy.parse(entries) if entries else None
