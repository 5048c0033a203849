"""Which extractor a document gets: the declared media type, or one detected from the
content when none (or ``application/octet-stream``) was declared.

Detection, in order: the PDF signature ``%PDF-`` in the first KiB; the file name's
extension; then the content decoded as text: JSON if it starts like JSON and parses,
HTML if it starts with markup a browser would sniff as HTML, else plain text. Content
that is neither PDF nor text is refused. Pure and CPU-bound.
"""

from __future__ import annotations

import json
import re

import attrs

from daemon.modules.ingestion.errors import CorruptContent, UnsupportedContent
from daemon.modules.ingestion.extraction.charset import decode_text

PLAIN = "text/plain"
HTML = "text/html"
JSON = "application/json"
CSV = "text/csv"
PDF = "application/pdf"

SUPPORTED_MEDIA_TYPES: tuple[str, ...] = (PLAIN, HTML, JSON, CSV, PDF)
"""The canonical media types extraction handles."""

DETECTED_MEDIA_TYPES: frozenset[str] = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/unknown"}
)
"""Declared types that say "unknown": the type is detected from the content."""

_ALIASES = {
    "text/plain": PLAIN,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/json": JSON,
    "text/json": JSON,
    "text/csv": CSV,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "text/comma-separated-values": CSV,
    "application/pdf": PDF,
    "application/x-pdf": PDF,
}
_EXTENSIONS = {
    "txt": PLAIN,
    "text": PLAIN,
    "log": PLAIN,
    "htm": HTML,
    "html": HTML,
    "xhtml": HTML,
    "json": JSON,
    "csv": CSV,
    "pdf": PDF,
}
_PDF_SIGNATURE = b"%PDF-"
_PDF_SIGNATURE_WITHIN = 1024
# The start of a document a browser sniffs as HTML (WHATWG MIME Sniffing, 7.1).
_HTML_START = re.compile(
    r"<(?:!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p"
    r"|!--)[\s>/]",
    re.IGNORECASE,
)
_XML_HTML = re.compile(r"<\?xml[^>]*>\s*(?:<!doctype\s+html|<html)[\s>]", re.IGNORECASE)


@attrs.frozen(kw_only=True)
class MediaType:
    """A parsed media type: ``essence`` lower-cased (``""`` when missing), ``charset`` the
    value of the ``charset`` parameter if any."""

    essence: str
    charset: str | None = None


@attrs.frozen(kw_only=True)
class Resolved:
    """The media type to extract as, the declared charset, and how it was decided."""

    media_type: str
    charset: str | None = None
    warnings: tuple[str, ...] = ()


def parse_media_type(value: str | None) -> MediaType:
    """``value`` (a Content-Type header value, e.g. ``Text/HTML; charset="UTF-8"``) parsed."""
    essence, _, params = (value or "").partition(";")
    charset = None
    for param in params.split(";"):
        key, sep, raw = param.partition("=")
        if sep and key.strip().lower() == "charset":
            charset = raw.strip().strip('"').strip() or None
            break
    return MediaType(essence=essence.strip().lower(), charset=charset)


def canonical_media_type(value: str | None) -> str | None:
    """The supported media type that ``value`` names (aliases resolved: ``text/x-csv`` is
    ``text/csv``, ``application/ld+json`` is ``application/json``), or None if it names
    none. A missing or "unknown" type is None too: see :func:`is_supported_media_type`."""
    essence = parse_media_type(value).essence
    if essence in _ALIASES:
        return _ALIASES[essence]
    if essence.startswith("application/") and essence.endswith("+json"):
        return JSON
    return None


def is_supported_media_type(value: str | None) -> bool:
    """Whether extraction accepts a document declared as ``value``: a supported type, or
    none / ``application/octet-stream`` (detected from the content). For the intake API
    to answer 415 before storing anything."""
    essence = parse_media_type(value).essence
    return (
        not essence or essence in DETECTED_MEDIA_TYPES or canonical_media_type(essence) is not None
    )


def unsupported_message(essence: str) -> str:
    return (
        f"unsupported media type {essence!r}; supported: {', '.join(SUPPORTED_MEDIA_TYPES)}"
        " (or application/octet-stream to detect the type from the content)"
    )


def resolve_media_type(data: bytes, declared: str | None, filename: str | None) -> Resolved:
    """The media type to extract ``data`` as.

    Raises:
        UnsupportedContent: the declared type is not supported, or no type was declared
            and the content is neither PDF nor text.
    """
    parsed = parse_media_type(declared)
    if parsed.essence and parsed.essence not in DETECTED_MEDIA_TYPES:
        canonical = canonical_media_type(parsed.essence)
        if canonical is None:
            raise UnsupportedContent(unsupported_message(parsed.essence))
        return Resolved(media_type=canonical, charset=parsed.charset)
    detected, source = _detect(data, parsed.charset, filename)
    said = f"declared as {parsed.essence}" if parsed.essence else "no media type declared"
    return Resolved(
        media_type=detected,
        charset=parsed.charset,
        warnings=(f"{said}: detected {detected} from the {source}",),
    )


def _detect(data: bytes, charset: str | None, filename: str | None) -> tuple[str, str]:
    if _PDF_SIGNATURE in data[:_PDF_SIGNATURE_WITHIN]:
        return PDF, "content"
    by_name = _by_extension(filename)
    if by_name is not None:
        return by_name, "file name"
    try:
        text = decode_text(data, declared=charset).text
    except CorruptContent:
        raise UnsupportedContent(
            "content of unknown type: not PDF and not text (binary data?); supported: "
            + ", ".join(SUPPORTED_MEDIA_TYPES)
        ) from None
    start = text.lstrip("\ufeff \t\r\n")
    if start[:1] in ("{", "["):
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            return JSON, "content"
    if _HTML_START.match(start) or _XML_HTML.match(start):
        return HTML, "content"
    return PLAIN, "content"


def _by_extension(filename: str | None) -> str | None:
    if not filename:
        return None
    name = re.split(r"[\\/]", filename)[-1]
    stem, dot, extension = name.rpartition(".")
    return _EXTENSIONS.get(extension.lower()) if dot and stem else None
