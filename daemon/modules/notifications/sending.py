"""Send one notice to one channel (webhook or email), bounded in time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import trio

from daemon.modules.ingestion import FetchRefused, FetchUnavailable, post_guarded
from daemon.modules.notifications.email_sender import send_email
from daemon.modules.notifications.errors import DeliveryFailed
from daemon.modules.notifications.messages import email_text, webhook_body
from daemon.modules.notifications.signing import signed_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemon.modules.ingestion import FetchPolicy
    from daemon.modules.notifications.messages import Notice


@attrs.frozen(kw_only=True)
class DeliveryOptions:
    """How deliveries go out: the fetch policy of the SSRF guard (its ``total_timeout``
    is one attempt's time limit), attempts before a delivery fails for good, and the cap
    of the exponential backoff between attempts."""

    fetch: FetchPolicy
    max_attempts: int = 12
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 120.0


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url`` (what may be shown of a webhook URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
        host = parts.hostname or ""
    except ValueError:
        return "(the webhook URL)"
    return f"{parts.scheme}://[{host}]:{port}" if ":" in host else f"{parts.scheme}://{host}:{port}"


def redacted(text: str, url: str) -> str:
    """``text`` without ``url`` or its path and query (each replaced by what may be shown)."""
    text = text.replace(url, origin(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    for secret in (
        parts.path + ("?" + parts.query if parts.query else ""),
        parts.path,
        parts.query,
    ):
        if len(secret) > 1:
            text = text.replace(secret, "/…")
    return text


async def send(
    kind: str,
    config: Mapping[str, Any],
    secret: str | None,
    notice: Notice,
    options: DeliveryOptions,
) -> None:
    """Deliver ``notice``; returns when the receiver accepted it (2xx, or SMTP accepted).

    Raises:
        DeliveryFailed: transient or not (``permanent``), the reason: never the secret,
            never a webhook URL's path or query (a chat webhook's credential), only its
            ``scheme://host:port``.
        FetchRefused: the webhook URL or the SMTP server is refused by the address
            policy or the egress allowlist (permanent).
    """
    if kind == "webhook":
        body = webhook_body(notice, str(config.get("format", "json")))
        headers = {
            "content-type": "application/json",
            **signed_headers(secret or "", notice.delivery_id, body),
        }
        url = str(config["url"])
        try:
            status = await post_guarded(url, body, headers, options.fetch)
        except FetchUnavailable as exc:
            raise DeliveryFailed(redacted(str(exc), url)[:300]) from None
        except FetchRefused as exc:
            raise FetchRefused(redacted(str(exc), url)[:300]) from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the receiver answered HTTP {status}")
        return
    if kind == "email":
        subject, text = email_text(notice)
        timeout = options.fetch.total_timeout
        try:
            with trio.fail_after(timeout * 2):  # the socket timeout bounds each step
                await send_email(
                    {**config, "password": secret},
                    subject,
                    text,
                    delivery_id=notice.delivery_id,
                    timeout=timeout,
                    policy=options.fetch,
                )
        except trio.TooSlowError:
            raise DeliveryFailed(f"SMTP: not done within {timeout * 2:g} s") from None
        return
    raise DeliveryFailed(f"unknown channel kind {kind!r}")


__all__ = ["DeliveryOptions", "FetchRefused", "send"]
