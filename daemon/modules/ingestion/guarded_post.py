"""POST through the SSRF guard: the one way other modules send HTTP out (webhooks).

The same rules as :func:`.fetch.fetch_url` apply: the URL is checked without DNS, every
address the host resolves to is vetted by the :class:`~.fetch.FetchPolicy`'s address
policy and egress allowlist where the connection is made, no proxy is consulted.
Redirects are not followed (a webhook answers, it does not move).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import trio

from daemon.modules.ingestion.errors import FetchRefused, FetchUnavailable
from daemon.modules.ingestion.fetch import _default_ssl_context, checked_url
from daemon.modules.ingestion.guarded_network import (
    GuardedBackend,
    GuardedTransport,
    Resolver,
    resolve_host,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion.fetch import FetchPolicy

_MAX_REPLY_BYTES = 64 * 1024


def url_origin(url: httpx.URL) -> str:
    """``scheme://host:port`` of ``url``: what an error or a log line may name (a chat
    webhook's path and query are its credential)."""
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    host = url.raw_host.decode("ascii")
    return f"{url.scheme}://[{host}]:{port}" if ":" in host else f"{url.scheme}://{host}:{port}"


def _redact(text: str, url: httpx.URL | str, origin: str) -> str:
    """``text`` with ``url`` (as given and as parsed) and its path-and-query replaced by
    ``origin``: what a message made by another layer may say without the credential."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return text.replace(str(url), origin)
    for whole in sorted({str(url), str(parsed)}, key=len, reverse=True):
        text = text.replace(whole, origin)
    tail = parsed.raw_path.decode("ascii", "replace")
    if len(tail) > 1:
        text = text.replace(tail, "/…")
    return text


def check_outbound_url(url: str, policy: FetchPolicy) -> None:
    """Refuse ``url`` as far as can be told without DNS (scheme, host, a literal address
    the policy refuses, the egress allowlist).

    Raises:
        FetchRefused: naming why.
    """
    checked_url(url, policy.address_policy, egress=policy.egress)


async def post_guarded(
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    policy: FetchPolicy,
    *,
    resolver: Resolver = resolve_host,
) -> int:
    """POST ``content`` to ``url``; the reply's status (any; the caller judges it). The
    reply body is read up to 64 KiB and dropped. Cancellation-safe.

    Raises:
        FetchRefused: the URL or an address is refused by policy (permanent).
        FetchUnavailable: timeout (``policy.total_timeout``), network or DNS failure.
    """
    target = checked_url(url, policy.address_policy, egress=policy.egress)
    where = url_origin(target)  # never the path or query: they may be the credential
    backend = GuardedBackend(policy.address_policy, resolver, egress=policy.egress)
    transport = GuardedTransport(backend, ssl_context=policy.ssl_context or _default_ssl_context())
    # The transport directly, not a client: nothing logs the URL (a chat webhook's URL
    # is its credential).
    request = httpx.Request(
        "POST",
        target,
        content=content,
        headers={"User-Agent": policy.user_agent, **headers},
        extensions={
            "timeout": httpx.Timeout(policy.total_timeout, connect=policy.connect_timeout).as_dict()
        },
    )
    try:
        with trio.fail_after(policy.total_timeout):
            async with transport:
                response = await transport.handle_async_request(request)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > _MAX_REPLY_BYTES:
                            break
                finally:
                    await response.aclose()
                return response.status_code
    except trio.TooSlowError as exc:
        raise FetchUnavailable(f"{where}: no answer within {policy.total_timeout:g} s") from exc
    except FetchRefused:
        raise
    except httpx.HTTPError as exc:
        reason = _redact(str(exc), target, where) or type(exc).__name__
        raise FetchUnavailable(f"{where}: {reason}") from exc
