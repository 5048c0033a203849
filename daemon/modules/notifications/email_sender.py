"""Email over SMTP from a worker thread (smtplib), never on the event loop.

A channel's email configuration: ``to`` (addresses), ``host``, ``port``, ``security``
(``starttls``, ``tls`` or ``none``), optional ``username``/``password`` (the password is
write-only: stored, never shown), ``from``. The whole exchange runs in
:func:`trio.to_thread.run_sync` under a socket timeout; the thread is abandonable, so a
cancelled delivery returns at once and the thread ends at its timeout.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import trio

from daemon.modules.notifications.errors import DeliveryFailed

if TYPE_CHECKING:
    from collections.abc import Mapping

SECURITIES = ("starttls", "tls", "none")


def _send_blocking(
    config: Mapping[str, Any], subject: str, text: str, delivery_id: str, timeout: float
) -> None:
    message = EmailMessage()
    message["From"] = config.get("from") or "triaged@localhost"
    message["To"] = ", ".join(config["to"])
    message["Subject"] = subject
    message["Message-ID"] = f"<{delivery_id}@triaged>"  # the same on every retry
    message.set_content(text)
    host, port = config["host"], int(config["port"])
    security = config.get("security", "starttls")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if security == "tls":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if security == "starttls":
            smtp.starttls(context=context)
        if config.get("username"):
            smtp.login(config["username"], config.get("password") or "")
        smtp.send_message(message)


async def send_email(
    config: Mapping[str, Any], subject: str, text: str, *, delivery_id: str, timeout: float
) -> None:
    """Send one message. Cancellation returns at once (the thread is abandoned).

    Raises:
        DeliveryFailed: the SMTP exchange failed (the reason, never the password).
    """
    try:
        await trio.to_thread.run_sync(
            _send_blocking, config, subject, text, delivery_id, timeout, abandon_on_cancel=True
        )
    except smtplib.SMTPResponseException as exc:
        raise DeliveryFailed(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(f"SMTP: {type(exc).__name__}: {exc}"[:300]) from None
