"""``extract_text``: from a document's bytes and media type to its text.

Contract: everything here is synchronous, CPU-bound and free of I/O and shared mutable
state; it holds the GIL (pure Python, regular expressions), so it runs in a CPU worker
process (the extract step hands its batch to ``CpuProcesses``, docs/adr/0006), or at
least a thread, never on the event loop.

A call in progress is not interrupted, so the work is bounded instead: extractors stop
once the text reaches ``max_chars`` and PDFs are read for at most ``pdf_text.MAX_PAGES`` pages.
What remains proportional to the input (decoding it, parsing a JSON document) is bounded
by the intake's body size limit.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

from daemon.modules.ingestion.errors import EmptyContent
from daemon.modules.ingestion.extraction import (
    csv_text,
    html_text,
    json_text,
    pdf_text,
    plain_text,
)
from daemon.modules.ingestion.extraction.media import (
    CSV,
    HTML,
    JSON,
    PDF,
    PLAIN,
    resolve_media_type,
)
from daemon.modules.ingestion.extraction.result import DEFAULT_MAX_CHARS

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.modules.ingestion.extraction.result import Extracted


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _pdf(data: bytes, *, charset: str | None, max_chars: int) -> Extracted:
    return pdf_text.extract(data, max_chars=max_chars)


_EXTRACTORS: dict[str, Callable[..., Extracted]] = {
    PLAIN: plain_text.extract,
    HTML: html_text.extract,
    JSON: json_text.extract,
    CSV: csv_text.extract,
    PDF: _pdf,
}


def extract_text(
    data: bytes,
    media_type: str | None,
    *,
    filename: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Extracted:
    """The text of a document.

    ``media_type`` is the declared Content-Type (parameters allowed: a ``charset`` is
    honoured for text types). None, empty or ``application/octet-stream`` means "detect
    from the content" (``filename``'s extension helps); a warning then says what was
    detected. The text is cut at ``max_chars`` characters (``truncated`` is set).
    Deterministic: the same arguments give the same result. See the module docstring for
    the threading contract.

    Raises:
        ValueError: ``max_chars`` is below 1 (a caller's bug, not the document's).
        EmptyContent: ``data`` is empty.
        UnsupportedContent: the media type is not one of ``SUPPORTED_MEDIA_TYPES`` (the
            message names it and lists them), or undeclared content is neither PDF nor
            text.
        CorruptContent: the content does not parse as its type (text that no charset
            decodes, invalid JSON or CSV, a truncated or broken PDF).
        EncryptedContent: a PDF that needs a password.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    if not data:
        raise EmptyContent("empty document (0 bytes)")
    resolved = resolve_media_type(data, media_type, filename)
    extracted = _EXTRACTORS[resolved.media_type](
        data, charset=resolved.charset, max_chars=max_chars
    )
    notes = [*resolved.warnings, *extracted.warnings]
    if _UNSTORABLE.search(extracted.text):
        # NUL and lone surrogates (from a JSON escape, or a text with stray NULs) can be
        # neither stored in PostgreSQL text nor encoded as UTF-8.
        extracted = attrs.evolve(extracted, text=_UNSTORABLE.sub("", extracted.text))
        notes.append("NUL characters or lone surrogates removed")
    if not extracted.text.strip():
        hint = " (a scanned PDF without a text layer?)" if resolved.media_type == PDF else ""
        notes.append(f"no text found{hint}")
    return attrs.evolve(extracted, warnings=tuple(notes))
