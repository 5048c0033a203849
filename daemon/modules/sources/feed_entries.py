"""Reading a feed (RSS 0.9x/1.0/2.0, Atom) into entries: pure, CPU-bound, run in a
thread. feedparser is the maintained, tolerant parser of record for real-world feeds
(broken encodings, HTML in titles, both RSS dialects and Atom behind one interface)."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

from daemon.modules.ingestion import CorruptContent


@attrs.frozen(kw_only=True)
class FeedEntry:
    identity: str  # id/guid, else link, else a hash of title and date
    title: str
    link: str | None
    content: str
    content_type: str  # text/html or text/plain
    published: str | None


def entry_identity(entry: Any) -> str:
    """An entry's identity: its id (RSS guid, Atom id), else its link, else the SHA-256 of
    its title and date."""
    for key in ("id", "link"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return f"{key}:{value.strip()}"
    date = entry.get("published") or entry.get("updated") or ""
    digest = hashlib.sha256(f"{entry.get('title', '')}\0{date}".encode()).hexdigest()
    return f"hash:{digest}"


def _text(entry: Any) -> tuple[str, str]:
    for part in entry.get("content") or ():
        value = part.get("value")
        if value:
            return value, _kind(part.get("type"))
    summary = entry.get("summary")
    if summary:
        detail = entry.get("summary_detail") or {}
        return summary, _kind(detail.get("type"))
    return entry.get("title", "") or "", "text/plain"


def _kind(media_type: object) -> str:
    return "text/html" if media_type in ("text/html", "application/xhtml+xml") else "text/plain"


def parse_feed(data: bytes) -> list[FeedEntry]:
    """The feed's entries, oldest first (feeds list newest first).

    Raises:
        CorruptContent: the bytes are not a feed (no entries and a parse error).
    """
    # Imported on first use (in the parsing thread): feedparser costs ~12 MB of memory that
    # a process which never polls a feed should not carry.
    import feedparser

    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=False)
    if parsed.get("bozo") and not parsed.entries and not parsed.get("feed"):
        raise CorruptContent(f"not a readable feed: {parsed.get('bozo_exception')}")
    entries = []
    for entry in parsed.entries:
        content, content_type = _text(entry)
        link = entry.get("link")
        entries.append(
            FeedEntry(
                identity=entry_identity(entry),
                title=str(entry.get("title", "") or "")[:1000],
                link=link if isinstance(link, str) and link else None,
                content=content,
                content_type=content_type,
                published=entry.get("published") or entry.get("updated"),
            )
        )
    entries.reverse()
    return entries
