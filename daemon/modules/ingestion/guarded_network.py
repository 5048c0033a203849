"""The network layer under :func:`.fetch.fetch_url`: every TCP connection is vetted.

Checking a URL's host before the request is not enough: the name may resolve to a
public address when checked and to ``127.0.0.1`` a moment later (DNS rebinding), and
legacy spellings such as ``http://2130706433/`` or ``http://127.1/`` are host names to
a URL parser but loopback to the resolver. So the guard sits where the connection is
made. :class:`GuardedBackend` is an ``httpcore`` network backend whose ``connect_tcp``
resolves the host itself, vets *every* address it gets with an
:class:`~.address_policy.AddressPolicy` (one refused address refuses the host), and then
connects to those vetted IP addresses, never to the name, so no second lookup happens
between check and connect. Given an :class:`~.egress_policy.EgressPolicy` (``egress=``),
it first checks the host against that allowlist, *before* resolving: a name no entry
lists is refused without a DNS query, and the addresses of a name allowed only through
the allowlist's networks (``localhost``) must all lie in them. Legacy numeric spellings
(``127.1``) are parsed here as the IPv4 addresses they denote and never resolved.

TLS still verifies the certificate against, and sends SNI for, the URL's host name, and
the ``Host`` header stays the name: ``httpcore`` takes both from the request's origin,
not from the socket.

:class:`GuardedTransport` is the ``httpx`` transport over a connection pool that uses
that backend, with no proxy (environment proxy settings are never consulted) and HTTP/1.1
only. It translates ``httpcore`` errors at the edge into the error tree:
timeouts and network, DNS and protocol failures become the transient
``FetchUnavailable``; a refused address stays ``FetchRefused`` (permanent).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import httpcore
import httpx
import trio

from daemon.modules.ingestion.address_policy import IPAddress
from daemon.modules.ingestion.egress_policy import host_address
from daemon.modules.ingestion.errors import FetchRefused, FetchUnavailable
from daemon.shared.errors import describe_cause

if TYPE_CHECKING:
    import ssl

    from daemon.modules.ingestion.address_policy import AddressPolicy
    from daemon.modules.ingestion.egress_policy import EgressPolicy

log = logging.getLogger("triaged.egress")

Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""``resolve(host, port)``: the addresses of ``host``, in the order to try them; raises
``OSError`` when the name cannot be resolved."""


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver (``getaddrinfo``, in a worker thread): the IPv4 and IPv6
    addresses of ``host``, deduplicated, in the resolver's order.

    Raises:
        OSError: (``socket.gaierror``) the name does not resolve.
    """
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonical, sockaddr in infos:
        if family not in (trio.socket.AF_INET, trio.socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def refuse_egress(reason: str, host: str) -> FetchRefused:
    """The error for a request the egress allowlist refuses, logged (``action=
    "egress.refused"``) with the host only: never the URL's path, query or userinfo,
    which may carry tokens."""
    log.info("egress refused: %s", reason, extra={"action": "egress.refused", "host": host[:255]})
    return FetchRefused(f"refused: {reason}")


def check_egress_host(egress: EgressPolicy | None, host: str) -> None:
    """Return if ``host`` may be contacted as far as ``egress`` can tell without DNS
    (``None``: no allowlist). Pure apart from the log line.

    Raises:
        FetchRefused: it may not (logged, see :func:`refuse_egress`).
    """
    if egress is None:
        return
    reason = egress.host_refusal(host)
    if reason is not None:
        raise refuse_egress(reason, host)


def note_configured_url(egress: EgressPolicy | None, url: str | None, what: str) -> bool:
    """At start-up: warn (``action="egress.configured_outside"``) if ``url``, which the
    operator configured for ``what`` (e.g. the model server), is outside ``egress``.
    Such URLs are not confined by the allowlist (the operator chose them explicitly);
    the warning only makes the exception visible. Logs the host, never the whole URL
    (it may carry credentials). Whether it warned."""
    if egress is None or url is None:
        return False
    reason = egress.url_refusal(url)
    if reason is None:
        return False
    log.warning(
        "%s is outside the egress allowlist (%s); it is contacted anyway: the allowlist "
        "confines fetches, not operator-configured servers",
        what,
        reason,
        extra={"action": "egress.configured_outside", "host": urlsplit(url).hostname},
    )
    return True


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An ``httpcore`` Trio network backend that connects only to allowed addresses.

    ``connect_tcp`` raises ``FetchRefused`` (before any connection is attempted) if
    ``host`` is outside ``egress`` (checked before any DNS query: the resolver is not
    called for a refused name), or is, or resolves to, any address ``policy`` or
    ``egress`` refuses. Otherwise it tries the addresses in order and returns a stream
    to the first that accepts. The ``timeout`` covers resolution and all attempts
    together. Network failures are raised as ``httpcore`` errors (``ConnectError``,
    ``ConnectTimeout``), as any backend does. Other outbound clients reuse it (with a
    :class:`GuardedTransport`) to be confined by the same policies.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver = resolve_host,
        *,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._egress = egress
        self._trio = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                addresses = await self._vetted_addresses(host, port)
                failure: httpcore.ConnectError | None = None
                for address in addresses:
                    try:
                        # An IP literal: trio's getaddrinfo parses it without a lookup.
                        return await self._trio.connect_tcp(
                            str(address),
                            port,
                            local_address=local_address,
                            socket_options=socket_options,
                        )
                    except httpcore.ConnectError as exc:
                        failure = exc
                assert failure is not None  # _vetted_addresses never returns []
                raise failure
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc

    async def _vetted_addresses(self, host: str, port: int) -> Sequence[IPAddress]:
        check_egress_host(self._egress, host)  # before anything can reach DNS
        literal = host_address(host)
        if literal is not None:
            self._policy.check(literal)
            return [literal]
        try:
            addresses = await self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: no addresses")
        if self._egress is not None:
            reason = self._egress.resolved_refusal(host, addresses)
            if reason is not None:
                raise refuse_egress(reason, host)
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                raise FetchRefused(f"refused: {reason} (resolved from {host!r})")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("refused: Unix domain sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


@contextlib.contextmanager
def _translated(origin: str) -> Iterator[None]:
    """``httpcore`` errors raised inside, as ``FetchRefused`` or ``FetchUnavailable``."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise FetchUnavailable(f"{origin}: timed out ({type(exc).__name__})") from exc
    except httpcore.UnsupportedProtocol as exc:
        raise FetchRefused(f"refused: {origin}: {exc}") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError) as exc:
        raise FetchUnavailable(f"{origin}: {describe_cause(exc)}") from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes] | Iterable[bytes], origin: str) -> None:
        self._stream = stream
        self._origin = origin

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stream = self._stream
        assert isinstance(stream, AsyncIterable)  # the async pool's streams always are
        with _translated(self._origin):
            async for part in stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with _translated(self._origin):
                await aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport whose connections all go through a :class:`GuardedBackend`.

    No proxies, no connection retries, HTTP/1.1. Use it as an async context manager (or
    ``aclose()`` it) to close its pooled connections. Raises ``FetchRefused`` and
    ``FetchUnavailable`` (see the module docstring), never ``httpcore`` errors.
    """

    def __init__(self, backend: GuardedBackend, *, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=2,  # one fetch is sequential: a redirect may open a second
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated(origin):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, origin),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
