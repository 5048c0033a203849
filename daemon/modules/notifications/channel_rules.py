"""What a notification channel may be: the pure checks of an admin's input.

A channel is ``{name, kind, config, events, min_severity, enabled}``. Its ``config``
splits in two: what may be shown (a webhook's ``url`` and ``format``; an email's ``to``,
``host``, ``port``, ``security``, ``username``, ``from``) and the secret, which is
write-only (a webhook's ``secret``, an email's ``password``): stored, never answered.
Email credentials only with ``tls`` or ``starttls``; a secret does not follow a change
of its destination (:func:`check_secret_follows`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from daemon.modules.notifications.email_sender import SECURITIES
from daemon.modules.notifications.escalation_policy import SEVERITIES
from daemon.shared.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Mapping

KINDS = ("webhook", "email")
EVENTS = ("opened", "escalated", "resolved")
WEBHOOK_FORMATS = ("json", "slack")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_EMAIL = re.compile(r"[^@\s,<>]{1,64}@[^@\s,<>]{1,190}")
_HOST = re.compile(r"[A-Za-z0-9.:_-]{1,253}")
MAX_RECIPIENTS = 20
SECRET_KEYS = {"webhook": "secret", "email": "password"}
_SHOWN_KEYS = {
    "webhook": {"url", "format"},
    "email": {"to", "host", "port", "security", "username", "from"},
}


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"field": field, "message": message}])


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _fail("name", "1-64 lower case letters, digits, '.', '_', '-'")
    return name


def check_events(events: object) -> list[str]:
    if not isinstance(events, list) or not all(e in EVENTS for e in events):
        raise _fail("events", f"a list of {', '.join(EVENTS)}")
    return sorted(set(events), key=EVENTS.index)


def check_severity(value: object) -> str:
    if value not in SEVERITIES:
        raise _fail("min_severity", f"one of {', '.join(SEVERITIES)}")
    assert isinstance(value, str)
    return value


def split_config(
    kind: str, config: object, *, old_secret: str | None, creating: bool
) -> tuple[dict[str, Any], str | None]:
    """The shown part and the secret of a channel's ``config``; a secret not given keeps
    ``old_secret``. The URL is not checked against the address policy here (that needs
    the fetch policy: :func:`daemon.modules.notifications.channels.check_reachable`).

    Raises:
        ValidationFailed: naming the field (``config.url``, ``config.to``, ...).
    """
    if kind not in KINDS:
        raise _fail("kind", f"one of {', '.join(KINDS)}")
    if not isinstance(config, dict):
        raise _fail("config", "an object")
    secret_key = SECRET_KEYS[kind]
    unknown = set(config) - _SHOWN_KEYS[kind] - {secret_key}
    if unknown:
        raise _fail(f"config.{sorted(unknown)[0]}", f"not a field of a {kind} channel")
    secret = config.get(secret_key, old_secret)
    if secret is not None and (not isinstance(secret, str) or not 1 <= len(secret) <= 500):
        raise _fail(f"config.{secret_key}", "a string of 1 to 500 characters")
    shown = {key: value for key, value in config.items() if key != secret_key}
    if kind == "webhook":
        return _webhook(shown, secret, creating=creating), secret
    email = _email(shown)
    if email["security"] not in ("tls", "starttls"):
        for key, value in (("username", email.get("username")), ("password", secret)):
            if value is not None:
                raise _fail(f"config.{key}", "only with security tls or starttls (never in clear)")
    return email, secret


def destination(kind: str, shown: Mapping[str, Any]) -> tuple[str, str, object]:
    """Where a channel's secret goes: a webhook URL's (scheme, host, port), an email
    server's ("smtp", host, port). Total: unchecked input gives some value, never raises."""
    if kind == "email":
        return ("smtp", str(shown.get("host", "")).lower().rstrip("."), shown.get("port"))
    try:
        parts = urlsplit(str(shown.get("url", "")))
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
        return (parts.scheme, (parts.hostname or "").rstrip("."), port)
    except ValueError:
        return ("", str(shown.get("url", "")), 0)


def check_secret_follows(
    kind: str, old_shown: Mapping[str, Any], new_config: Mapping[str, Any], has_secret: bool
) -> None:
    """A change of where the secret goes (a webhook URL's scheme, host or port; an email
    server's host or port) must give the secret again: else whoever may change a channel
    could send the stored secret to a server of theirs.

    Raises:
        ValidationFailed: on ``config.secret`` / ``config.password``.
    """
    key = SECRET_KEYS.get(kind)
    if key is None or not has_secret or key in new_config:
        return
    merged = {**old_shown, **new_config}
    if destination(kind, merged) != destination(kind, old_shown):
        raise _fail(
            f"config.{key}", "required again: the channel's destination (host or port) changed"
        )


def _webhook(shown: dict[str, Any], secret: str | None, *, creating: bool) -> dict[str, Any]:
    url = shown.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise _fail("config.url", "an http(s) URL of at most 2000 characters")
    if secret is None:
        raise _fail("config.secret", "required: the signing secret of the webhook")
    fmt = shown.get("format", "json")
    if fmt not in WEBHOOK_FORMATS:
        raise _fail("config.format", f"one of {', '.join(WEBHOOK_FORMATS)}")
    return {"url": url, "format": fmt}


def _email(shown: dict[str, Any]) -> dict[str, Any]:
    to = shown.get("to")
    if isinstance(to, str):
        to = [to]
    if (
        not isinstance(to, list)
        or not 1 <= len(to) <= MAX_RECIPIENTS
        or not all(isinstance(a, str) and _EMAIL.fullmatch(a) for a in to)
    ):
        raise _fail("config.to", f"1 to {MAX_RECIPIENTS} email addresses")
    host = shown.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise _fail("config.host", "the SMTP server's host name or address")
    security = shown.get("security", "starttls")
    if security not in SECURITIES:
        raise _fail("config.security", f"one of {', '.join(SECURITIES)}")
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    port = shown.get("port", default_port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise _fail("config.port", "a port number")
    result: dict[str, Any] = {"to": to, "host": host, "port": port, "security": security}
    for key in ("username", "from"):
        value = shown.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not 1 <= len(value) <= 254:
            raise _fail(f"config.{key}", "a string of 1 to 254 characters")
        if key == "from" and not _EMAIL.fullmatch(value):
            raise _fail("config.from", "an email address")
        result[key] = value
    return result
