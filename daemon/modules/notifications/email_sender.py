"""Email over SMTP from a worker thread (smtplib), never on the event loop.

A channel's email configuration: ``to`` (addresses), ``host``, ``port``, ``security``
(``starttls``, ``tls`` or ``none``), optional ``username``/``password`` (the password is
write-only: stored, never shown; sent only over TLS), ``from``.

The SMTP server is held to the SSRF guard of webhooks and fetches (the fetch policy's
address policy and egress allowlist, ``TRIAGED_FETCH_*``): the host is checked before
any DNS query, resolved (in a thread), every address vetted (one refused address refuses
the host), and the connection made to a vetted address, never to the name again; TLS
still verifies the certificate against the host name. A refused server raises
``FetchRefused`` (permanent). The whole exchange runs in :func:`trio.to_thread.run_sync`
under a socket timeout; the thread is abandonable, so a cancelled delivery returns at
once and the thread ends at its timeout. Errors name the code or the error class, never
the server's text (an admin probing a channel learns no banners) nor the password.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import trio

from daemon.modules.ingestion import FetchRefused, check_outbound_url
from daemon.modules.notifications.errors import DeliveryFailed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from daemon.modules.ingestion import FetchPolicy

SECURITIES = ("starttls", "tls", "none")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def is_localhost(host: str) -> bool:
    """``localhost`` and its subdomains: loopback by definition (RFC 6761)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_smtp_host(host: str, port: int, policy: FetchPolicy) -> None:
    """Refuse ``host`` as far as can be told without DNS: outside the egress allowlist,
    a literal address the address policy refuses, or ``localhost`` when loopback is
    refused. Pure apart from the egress log line.

    Raises:
        FetchRefused: naming why (the host, never more).
    """
    shown = f"[{host}]" if ":" in host else host
    check_outbound_url(f"http://{shown}:{port}/", policy)
    implied = LOOPBACK if is_localhost(host) else legacy_ipv4(host)
    if implied is not None:
        reason = policy.address_policy.refusal(implied)
        if reason is not None:
            raise FetchRefused(f"refused: {reason} ({host!r})")


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric spelling the resolver accepts denotes (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``), else None. Pure (``inet_aton`` never queries DNS)."""
    if not host or not host[-1].isalnum() or not host.replace(".", "").isalnum():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def vetted_addresses(host: str, port: int, policy: FetchPolicy) -> list[IPAddress]:
    """The addresses of ``host`` the policy lets a connection reach, in the resolver's
    order; DNS runs in a thread.

    Raises:
        FetchRefused: the host or one of its addresses is refused (permanent).
        DeliveryFailed: the name does not resolve (transient).
    """
    check_smtp_host(host, port, policy)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryFailed(f"SMTP: cannot resolve {host!r} ({type(exc).__name__})") from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonical, sockaddr in infos:
        if family in (trio.socket.AF_INET, trio.socket.AF_INET6):
            address = ipaddress.ip_address(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise DeliveryFailed(f"SMTP: cannot resolve {host!r}")
    if policy.egress is not None:
        reason = policy.egress.resolved_refusal(host, addresses)
        if reason is not None:
            raise FetchRefused(f"refused: {reason}")
    for address in addresses:
        reason = policy.address_policy.refusal(address)
        if reason is not None:
            raise FetchRefused(f"refused: {reason} (resolved from {host!r})")
    return addresses


class _Pinned(smtplib.SMTP):
    """Connects to the vetted addresses only; ``_host`` stays the name (TLS's
    ``server_hostname``). smtplib's ``_get_socket`` is the one place it connects."""

    addresses: Sequence[IPAddress] = ()

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        failure: OSError | None = None
        for address in self.addresses:
            try:
                return socket.create_connection((str(address), port), timeout)
            except OSError as exc:
                failure = exc
        raise failure or OSError("no address to connect to")


class _PinnedSSL(smtplib.SMTP_SSL, _Pinned):
    """SMTP_SSL wraps what :class:`_Pinned` connects (its ``super()._get_socket``)."""


def _send_blocking(
    config: Mapping[str, Any],
    addresses: Sequence[IPAddress],
    message: EmailMessage,
    timeout: float,
    context: ssl.SSLContext,
) -> None:
    host, port = config["host"], int(config["port"])
    security = config.get("security", "starttls")
    smtp: smtplib.SMTP
    if security == "tls":
        smtp = _PinnedSSL(timeout=timeout, context=context)
    else:
        smtp = _Pinned(timeout=timeout)
    smtp.addresses = addresses
    smtp._host = host  # set by SMTP(host) only; TLS takes server_hostname from it
    code, greeting = smtp.connect(host, port)
    if code != 220:  # what SMTP(host, port) checks when it connects itself
        smtp.close()
        raise smtplib.SMTPConnectError(code, greeting)
    with smtp:
        if security == "starttls":
            smtp.starttls(context=context)
        if config.get("username"):
            smtp.login(config["username"], config.get("password") or "")
        smtp.send_message(message)


def _message(config: Mapping[str, Any], subject: str, text: str, delivery_id: str) -> EmailMessage:
    """Raises ValueError: a header cannot hold a value (e.g. a line break)."""
    message = EmailMessage()
    message["From"] = config.get("from") or "triaged@localhost"
    message["To"] = ", ".join(config["to"])
    message["Subject"] = subject
    message["Message-ID"] = f"<{delivery_id}@triaged>"  # the same on every retry
    message.set_content(text)
    return message


async def send_email(
    config: Mapping[str, Any],
    subject: str,
    text: str,
    *,
    delivery_id: str,
    timeout: float,
    policy: FetchPolicy,
) -> None:
    """Send one message to a server the policy allows. Cancellation returns at once (the
    thread is abandoned).

    Raises:
        FetchRefused: the server's host or an address of it is refused (permanent).
        DeliveryFailed: the SMTP exchange failed (the code or error class, never the
            server's text nor the password); ``permanent`` when retrying cannot help (a
            message no header can hold, a 5xx answer, credentials without TLS).
    """
    if config.get("username") and config.get("security", "starttls") not in ("tls", "starttls"):
        raise DeliveryFailed("SMTP: credentials are sent only over TLS", permanent=True)
    try:
        message = _message(config, subject, text, delivery_id)
    except ValueError as exc:
        raise DeliveryFailed(
            f"SMTP: the message cannot be sent ({exc})"[:300], permanent=True
        ) from None
    addresses = await vetted_addresses(str(config["host"]), int(config["port"]), policy)
    context = policy.ssl_context or ssl.create_default_context()
    try:
        await trio.to_thread.run_sync(
            _send_blocking, config, addresses, message, timeout, context, abandon_on_cancel=True
        )
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
        raise DeliveryFailed(f"SMTP: the server answered {code}", permanent=code >= 500) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _text in exc.recipients.values()})
        raise DeliveryFailed(
            f"SMTP: the server refused every recipient ({', '.join(map(str, codes))})",
            permanent=all(code >= 500 for code in codes),
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryFailed(
            "SMTP: the server does not support what the channel needs (STARTTLS or AUTH)",
            permanent=True,
        ) from None
    except ValueError as exc:  # e.g. an address smtplib cannot encode
        raise DeliveryFailed(f"SMTP: {type(exc).__name__}", permanent=True) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(f"SMTP: {type(exc).__name__}") from None
