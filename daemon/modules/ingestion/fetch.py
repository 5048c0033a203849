"""Fetching a document given as a ``url`` (pipeline step ``fetched``), safely.

:func:`fetch_url` GETs an ``http`` or ``https`` URL and returns its body as
:class:`Fetched`. It is built to be pointed at by strangers (SSRF):

- Only ``http`` and ``https``; URLs with userinfo (``user:pw@``) are refused; any port.
- Every TCP connection, including each redirect hop's, goes to an address vetted by the
  :class:`~.address_policy.AddressPolicy` at connect time, after our own DNS lookup
  (:mod:`.guarded_network`), so DNS rebinding and odd spellings (``http://2130706433/``)
  cannot reach loopback, private, link-local or other non-public addresses unless the
  :class:`FetchPolicy` allows them.
- With an egress allowlist (``FetchPolicy.egress``, an
  :class:`~.egress_policy.EgressPolicy`), every host, the first URL's and each
  redirect hop's, must be inside it, checked before any DNS query or connection.
- No proxies and no other settings from the environment.
- Redirects (301, 302, 303, 307, 308 only) are followed by hand, at most
  ``max_redirects``, each ``Location`` resolved against the URL that sent it and checked
  like the first URL.
- ``connect_timeout`` bounds DNS plus connecting; ``total_timeout`` the whole fetch,
  redirects and body included, however slowly the server drips.
- The body is streamed and counted after any ``Content-Encoding`` is undone (we ask for
  ``identity``; gzip and deflate are decoded within the budget, see
  :mod:`.content_coding`): the fetch stops as soon as it exceeds ``max_bytes``, and a
  ``Content-Length`` above the cap is refused before reading.

Errors (see :mod:`daemon.shared.errors`); the permanent ones are ``IngestionError``\\ s,
the pipeline fails the document at once; the transient one is retried with backoff:

==================  =========  ===========================================================
error               kind       when
==================  =========  ===========================================================
FetchRefused        permanent  bad scheme, userinfo, malformed URL, a refused address
                               (the message names its class), a host outside the egress
                               allowlist, too many redirects
FetchRejected       permanent  a 4xx other than 408 and 429; any other non-2xx that is
                               not a followable redirect (carries ``status``)
ContentTooLarge     permanent  the body is larger than ``max_bytes``
CorruptContent      permanent  the body's ``Content-Encoding`` cannot be decoded
UnsupportedContent  permanent  a ``Content-Encoding`` other than gzip or deflate
FetchUnavailable    transient  timeouts, DNS, connection and protocol failures, 408, 429
                               and 5xx (carries ``retry_after`` from ``Retry-After``)
==================  =========  ===========================================================
"""

from __future__ import annotations

import email.utils
import functools
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from daemon import __version__
from daemon.modules.ingestion.address_policy import (
    AddressPolicy,
    IPNetwork,
    parse_address,
    parse_networks,
)
from daemon.modules.ingestion.content_coding import BodyDecoder
from daemon.modules.ingestion.egress_policy import EgressPolicy, egress_policy
from daemon.modules.ingestion.errors import (
    ContentTooLarge,
    CorruptContent,
    FetchRefused,
    FetchRejected,
    FetchUnavailable,
)
from daemon.modules.ingestion.extraction.media import parse_media_type
from daemon.modules.ingestion.guarded_network import (
    GuardedBackend,
    GuardedTransport,
    Resolver,
    check_egress_host,
    resolve_host,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

    from daemon.shared.errors import DaemonError

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TOTAL_TIMEOUT = 60.0
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 3
DEFAULT_USER_AGENT = f"triaged/{__version__}"

SCHEMES: frozenset[str] = frozenset({"http", "https"})
REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})
TRANSIENT_CLIENT_STATUSES: frozenset[int] = frozenset({408, 429})
"""4xx answers that mean "not now" rather than "never"; every 5xx is transient too."""

# What a host name may be made of once httpx has IDNA-encoded it ("_" occurs in the wild).
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen(kw_only=True)
class FetchPolicy:
    """How :func:`fetch_url` may fetch: limits and which addresses it may reach.

    ``allowed_networks`` are CIDRs (strings or network objects) always allowed, e.g. an
    intranet document server's subnet, or a test's ``127.0.0.0/8``; ``allow_private``
    allows loopback, private, link-local and CGNAT addresses wholesale (but not cloud
    metadata; see :mod:`.address_policy`). ``ssl_context`` replaces the default
    (certifi's CAs) for ``https``, e.g. to trust an internal CA. ``egress`` is the
    egress allowlist (an :class:`~.egress_policy.EgressPolicy`, or its entries as
    strings; ``None`` or no entries: none): it narrows, never widens, what the address
    rule allows. Invalid values raise ``ValueError`` when the policy is built.
    """

    connect_timeout: float = attrs.field(default=DEFAULT_CONNECT_TIMEOUT, validator=_positive)
    total_timeout: float = attrs.field(default=DEFAULT_TOTAL_TIMEOUT, validator=_positive)
    max_bytes: int = attrs.field(default=DEFAULT_MAX_BYTES, validator=_positive)
    max_redirects: int = attrs.field(
        default=DEFAULT_MAX_REDIRECTS, validator=attrs.validators.ge(0)
    )
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = attrs.field(default=(), converter=parse_networks)
    egress: EgressPolicy | None = attrs.field(default=None, converter=egress_policy)
    user_agent: str = DEFAULT_USER_AGENT
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(
            allow_private=self.allow_private, allowed_networks=self.allowed_networks
        )


@attrs.frozen(kw_only=True)
class Fetched:
    """A fetched document.

    ``data`` is the body (at most ``max_bytes``, content-encoding undone);
    ``media_type`` the ``Content-Type`` without parameters, lower-cased (``None`` if the
    server sent none); ``charset`` its ``charset`` parameter, lower-cased, if any.
    ``final_url`` is the URL the body came from after ``redirects`` redirects, and
    ``status`` its (2xx) status.
    """

    data: bytes
    media_type: str | None
    charset: str | None
    final_url: str
    status: int
    redirects: int
    etag: str | None = None  # validators for a later conditional request
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        """A 304 answer to a conditional request (``data`` is empty)."""
        return self.status == 304


async def fetch_url(
    url: str,
    policy: FetchPolicy,
    *,
    resolver: Resolver = resolve_host,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """GET ``url`` under ``policy`` (see the module docstring for every rule).

    ``headers`` are sent with every request (redirect hops included): an auth header,
    or the validators of a conditional request (``If-None-Match``,
    ``If-Modified-Since``), to which a ``304`` answer is returned as a :class:`Fetched`
    with ``status`` 304 and no data instead of an error.

    ``resolver`` looks host names up (default: the system resolver); tests pass a fake
    one to play DNS tricks without DNS. Cancellation-safe: nothing outlives the call.

    Raises:
        FetchRefused: the URL, a redirect target or an address is refused by policy.
        FetchRejected: the server answered a permanent 4xx (or another non-2xx).
        ContentTooLarge: the body exceeds ``policy.max_bytes``.
        CorruptContent: the body's content-encoding is broken.
        UnsupportedContent: the body has a content-encoding we do not decode.
        FetchUnavailable: transient: timeout, network or DNS failure, 408, 429, 5xx.
    """
    target = checked_url(url, policy.address_policy, egress=policy.egress)
    try:
        with trio.fail_after(policy.total_timeout):
            return await _fetch(target, policy, resolver, headers or {})
    except trio.TooSlowError as exc:
        raise FetchUnavailable(
            f"{url}: not fetched within {policy.total_timeout:g} s (total timeout)"
        ) from exc
    except httpx.HTTPError as exc:  # the transport maps httpcore's; this is a safety net
        raise FetchUnavailable(f"{url}: {str(exc) or type(exc).__name__}") from exc


def checked_url(
    url: str | httpx.URL, address_policy: AddressPolicy, *, egress: EgressPolicy | None = None
) -> httpx.URL:
    """``url`` parsed, if it may be fetched as far as can be told without DNS.

    Raises:
        FetchRefused: malformed, not http(s), with userinfo, without a host, its host is
            outside ``egress`` (a name no entry lists, an address outside its networks;
            logged), or is a literal IP address the policy refuses.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchRefused(f"refused: not a valid URL: {exc}") from exc
    if parsed.scheme not in SCHEMES:
        shown = parsed.scheme or "(none)"
        raise FetchRefused(f"refused: scheme {shown} is not fetched (only http and https)")
    if parsed.userinfo:
        raise FetchRefused("refused: URLs with user information (user:password@) are not fetched")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded: what DNS and the backend see
    if not host:
        raise FetchRefused("refused: the URL has no host")
    literal = parse_address(host)
    if literal is None and not _HOST_NAME.fullmatch(host):
        raise FetchRefused(f"refused: {parsed.host!r} is not a valid host name")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise FetchRefused(f"refused: {parsed.port} is not a valid port")
    check_egress_host(egress, host)
    if literal is not None:
        address_policy.check(literal)
    return parsed.copy_with(fragment=None)


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # certifi's CAs, never SSL_CERT_FILE & co.; built on first use, then shared.
    return httpx.create_ssl_context(trust_env=False)


async def _fetch(
    target: httpx.URL, policy: FetchPolicy, resolver: Resolver, headers: Mapping[str, str]
) -> Fetched:
    backend = GuardedBackend(policy.address_policy, resolver, egress=policy.egress)
    transport = GuardedTransport(backend, ssl_context=policy.ssl_context or _default_ssl_context())
    client = httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(policy.total_timeout, connect=policy.connect_timeout),
        headers={
            "User-Agent": policy.user_agent,
            "Accept": "*/*",
            "Accept-Encoding": "identity",
        },
    )
    async with client:
        redirects = 0
        while True:
            async with client.stream("GET", target, headers=dict(headers)) as response:
                status = response.status_code
                if status == 304 and _conditional(headers):
                    return Fetched(
                        data=b"",
                        media_type=None,
                        charset=None,
                        final_url=str(target),
                        status=status,
                        redirects=redirects,
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                    )
                if status in REDIRECT_STATUSES:
                    origin = (target.scheme, target.host, target.port)
                    target = _redirect_target(target, response, redirects, policy)
                    if (target.scheme, target.host, target.port) != origin:
                        # Credentials go to the configured origin only.
                        headers = {k: v for k, v in headers.items() if k.lower() in _CONDITIONAL}
                    redirects += 1
                    continue
                _raise_for_status(target, response)
                data = await _read_body(target, response, policy.max_bytes)
                media = parse_media_type(response.headers.get("content-type"))
                return Fetched(
                    data=data,
                    media_type=media.essence or None,
                    charset=media.charset.lower() if media.charset else None,
                    final_url=str(target),
                    status=status,
                    redirects=redirects,
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )


_CONDITIONAL = frozenset({"if-none-match", "if-modified-since"})


def _conditional(headers: Mapping[str, str]) -> bool:
    return any(name.lower() in _CONDITIONAL for name in headers)


def _redirect_target(
    target: httpx.URL, response: httpx.Response, redirects: int, policy: FetchPolicy
) -> httpx.URL:
    status = response.status_code
    location = response.headers.get("location")
    if not location:
        raise FetchRejected(status, f"{target}: HTTP {status} redirect without a Location")
    if redirects >= policy.max_redirects:
        raise FetchRefused(
            f"refused: more than {policy.max_redirects} redirects (the last from {target})"
        )
    try:
        joined = target.join(location)
    except httpx.InvalidURL as exc:
        raise FetchRejected(status, f"{target}: invalid redirect Location: {exc}") from exc
    return checked_url(joined, policy.address_policy, egress=policy.egress)


def _raise_for_status(target: httpx.URL, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status >= 500 or status in TRANSIENT_CLIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=_utcnow())
        raise FetchUnavailable(
            f"{target}: the server answered HTTP {status}", retry_after=retry_after
        )
    raise FetchRejected(status, f"{target}: the server answered HTTP {status}")


async def _read_body(target: httpx.URL, response: httpx.Response, max_bytes: int) -> bytes:
    declared = content_length(response.headers)
    if declared is not None and declared > max_bytes:
        raise ContentTooLarge(
            max_bytes,
            f"{target}: Content-Length {declared} is larger than the limit of {max_bytes} bytes",
        )
    decoder = BodyDecoder(response.headers.get("content-encoding"))
    body = bytearray()
    failure: DaemonError | None = None
    # To stop early, cancel the read instead of leaving the loop: the cancellation lands
    # at httpcore's next socket read, so every async generator between here and there
    # (httpx's and httpcore's) unwinds and closes, instead of being abandoned to the
    # garbage collector half-way (which Trio flags, and which closes the socket late).
    with trio.CancelScope() as stop:
        async for raw in response.aiter_raw():
            if failure is not None:
                continue  # a chunk h11 had buffered; the cancellation comes next read
            try:
                body += decoder.decode(raw, max_bytes - len(body) + 1)
            except CorruptContent as exc:
                failure = CorruptContent(f"{target}: {exc}")
            else:
                if len(body) > max_bytes:
                    failure = _too_large(target, max_bytes)
            if failure is not None:
                stop.cancel()
    if failure is None:
        try:
            body += decoder.flush(max_bytes - len(body) + 1)
        except CorruptContent as exc:
            failure = CorruptContent(f"{target}: {exc}")
        else:
            if len(body) > max_bytes:
                failure = _too_large(target, max_bytes)
    if failure is not None:
        raise failure
    return bytes(body)


def _too_large(target: httpx.URL, max_bytes: int) -> ContentTooLarge:
    return ContentTooLarge(max_bytes, f"{target}: the body is larger than {max_bytes} bytes")


def content_length(headers: Mapping[str, str]) -> int | None:
    """The ``Content-Length`` header as a number, or ``None`` if absent or malformed (the
    streamed count then decides)."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() else None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` header value as seconds from ``now`` (aware): delta-seconds
    (``"120"``) or an HTTP date (``"Wed, 21 Oct 2015 07:28:00 GMT"``; a past one gives
    ``0``). ``None`` if absent or unparseable. Callers should clamp it to a sane range."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _utcnow() -> datetime:
    return datetime.now(UTC)
