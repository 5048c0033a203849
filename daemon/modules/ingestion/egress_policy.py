"""The egress allowlist (pure): the only places outbound requests may go.

``TRIAGED_FETCH_EGRESS_NETWORKS`` lists CIDRs (IP literals inside them are allowed) and
host names (exactly those names are allowed). :class:`EgressPolicy` is a second,
independent fence next to the SSRF guard's :class:`~.address_policy.AddressPolicy`: a
request must pass both, so the allowlist only ever narrows what the guard allows.

It is judged on the URL's host *before* any DNS query: a name that no host entry lists
is refused without being resolved, because resolving it would already send a query out
of the host. The one exception is ``localhost``, which the system resolver answers from
``/etc/hosts``: it is resolved, and allowed only if every address it resolves to lies in
a CIDR entry. Legacy numeric spellings (``127.1``, ``0x7f.1``, ``2130706433``) are IPv4
literals here, parsed as ``inet_aton`` and WHATWG URL parsers do, so they never reach
DNS either (:func:`host_address`). See ``docs/egress.md``.

Everything here is pure; :mod:`.guarded_network` applies the policy before it resolves
or connects, and logs refusals.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs

from daemon.modules.ingestion.address_policy import IPAddress, IPNetwork, parse_address

if TYPE_CHECKING:
    from collections.abc import Iterable


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
        bare = address
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            bare = ipaddress.IPv6Address(int(address))  # "fe80::1%eth0" is in fe80::/10
        candidates: list[IPAddress] = [bare]
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
