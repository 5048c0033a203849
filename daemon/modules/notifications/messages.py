"""What a notification says: the JSON body of a webhook, its Slack/Mattermost text form,
and an email's subject and text. Pure."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from datetime import datetime


@attrs.frozen(kw_only=True)
class Notice:
    """One case event to tell a channel about."""

    delivery_id: str
    event_id: int
    event_kind: str  # opened, escalated, resolved (or "test")
    actor: str
    at: datetime
    detail: dict[str, Any]
    case_id: int
    severity: str
    status: str
    level: int
    sla_due_at: datetime | None
    title: str


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every control character (CR, LF, TAB, ...; the Unicode line and
    paragraph separators) replaced by a space: safe in a mail header or a chat line."""
    return _CONTROL.sub(" ", text)


def slack_escaped(text: str) -> str:
    """``&``, ``<`` and ``>`` escaped as Slack (and Mattermost) document, so untrusted
    text cannot mention ``<!channel>`` or make ``<url|links>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(notice: Notice) -> str:
    """One line a person reads (no control characters: it is also a mail subject)."""
    what = {
        "opened": "opened",
        "resolved": "resolved",
        "escalated": f"escalated to level {notice.detail.get('level', notice.level)}",
        "test": "test message",
    }.get(notice.event_kind, notice.event_kind)
    line = f"[triaged] case #{notice.case_id} ({notice.severity}) {what}: {notice.title}"
    return one_line(line)[:500]


def webhook_body(notice: Notice, fmt: str) -> bytes:
    """The exact bytes sent (and signed). ``fmt``: ``json`` or ``slack`` (``{"text"}``,
    which Slack and Mattermost incoming webhooks accept)."""
    if fmt == "slack":
        return json.dumps({"text": slack_escaped(summary(notice))}, ensure_ascii=False).encode()
    body = {
        "type": f"case.{notice.event_kind}",
        "delivery_id": notice.delivery_id,
        "event": {
            "id": notice.event_id,
            "kind": notice.event_kind,
            "actor": notice.actor,
            "at": notice.at.isoformat(),
            "detail": notice.detail,
        },
        "case": {
            "id": notice.case_id,
            "title": notice.title,
            "severity": notice.severity,
            "status": notice.status,
            "escalation_level": notice.level,
            "sla_due_at": None if notice.sla_due_at is None else notice.sla_due_at.isoformat(),
        },
        "text": summary(notice),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def email_text(notice: Notice) -> tuple[str, str]:
    """Subject and plain-text body."""
    lines = [
        summary(notice),
        "",
        f"Case: #{notice.case_id}",
        f"Severity: {notice.severity}",
        f"Status: {notice.status}",
        f"Escalation level: {notice.level}",
        f"SLA due: {notice.sla_due_at.isoformat() if notice.sla_due_at else '-'}",
        one_line(f"Event: {notice.event_kind} by {notice.actor} at {notice.at.isoformat()}"),
        f"Delivery id: {notice.delivery_id}",
    ]
    return summary(notice), "\n".join(lines) + "\n"
