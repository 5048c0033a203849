"""Bytes to text: byte order mark, then the declared charset, then UTF-8, then detection.

The order follows what browsers do (WHATWG Encoding): a byte order mark beats every
declaration; a declared charset (the ``charset`` parameter of the media type, or a hint
found in the document itself such as an HTML ``<meta charset>``) beats guessing; UTF-8 is
tried before statistics because valid UTF-8 is rarely anything else. Only then does
``charset-normalizer`` guess. A declaration that is unknown or does not fit the bytes is
not an error: it is reported as a warning and the next step is tried.

Pure and CPU-bound; safe to call from worker threads.
"""

from __future__ import annotations

import codecs
import re

import attrs
import charset_normalizer

from daemon.modules.ingestion.errors import CorruptContent

_BOMS = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# When the detector cannot tell several charsets apart (short Western European texts
# decode identically in a dozen code pages), prefer the ones such documents really use.
_PREFERRED = ("utf_8", "ascii", "cp1252", "latin_1", "iso8859_15")

# C0 control characters other than whitespace and ESC, and DEL: rare in any real text.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_BINARY_SAMPLE = 65_536
_BINARY_RATIO = 0.1
_MAX_LABEL = 40


@attrs.frozen(kw_only=True)
class Decoded:
    """Decoded text, the codec used (Python's canonical name, e.g. ``utf-8``, ``cp1252``)
    and warnings about declarations that were ignored."""

    text: str
    charset: str
    warnings: tuple[str, ...] = ()


def looks_like_text(text: str) -> bool:
    """Whether ``text`` (its first 64 Ki characters) has few enough control characters
    to be text rather than decoded binary data."""
    sample = text[:_BINARY_SAMPLE]
    return len(_BINARY_CHARS.findall(sample)) <= _BINARY_RATIO * len(sample)


def decode_text(
    data: bytes, *, declared: str | None = None, hint: str | None = None, what: str = "document"
) -> Decoded:
    """``data`` decoded as text.

    ``declared`` is the charset from the transport (the media type's ``charset``
    parameter), ``hint`` one found inside the document. ``what`` names the document in
    messages (e.g. ``text/plain document``).

    Raises:
        CorruptContent: no charset decodes ``data`` to something that looks like text.
    """
    notes: list[str] = []
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = _attempt(data[len(bom) :], codec)
            if text is not None:
                named = _name(declared) if declared else None
                if named and not codec.startswith(named):  # "utf-16" agrees with "utf-16-le"
                    notes.append(f"declared charset {named} ignored for the byte order mark")
                return _decoded(text, codec, notes)
            notes.append(f"byte order mark says {codec}, but the content is not valid {codec}")
            break

    for label, origin in ((declared, "declared"), (hint, "in-document")):
        if not label:
            continue
        codec = _name(label)
        if codec is None:
            notes.append(f"{origin} charset {label[:_MAX_LABEL]!r} is unknown")
            continue
        text = _attempt(data, codec)
        if text is not None:
            return _decoded(text, codec, notes)
        notes.append(f"content is not valid {codec} as its {origin} charset says")

    text = _attempt(data, "utf-8")
    if text is not None:
        return _decoded(text, "utf-8", notes)

    detected = _detect(data)
    if detected is None:
        raise CorruptContent(f"{what} is not readable text in any known charset (binary data?)")
    return _decoded(*detected, notes)


def _decoded(text: str, charset: str, notes: list[str]) -> Decoded:
    # A declaration that failed is worth a warning only together with what was used.
    if notes:
        notes = [f"{note}; decoded as {charset}" for note in notes]
    return Decoded(text=text, charset=charset, warnings=tuple(notes))


def _name(label: str) -> str | None:
    """Python's canonical name of a text codec, or None if unknown or not a text codec."""
    label = label.strip().strip("\"'")
    if not label or len(label) > _MAX_LABEL:
        return None
    try:
        info = codecs.lookup(label)
        b"a".decode(info.name, "ignore")  # refuses bytes-to-bytes codecs (base64, zlib)
    except (LookupError, ValueError):
        return None
    return info.name


def _attempt(data: bytes, codec: str) -> str | None:
    try:
        text = data.decode(codec)
    except (ValueError, LookupError):  # UnicodeDecodeError, or a codec's own complaint
        return None
    return text if looks_like_text(text) else None


def _detect(data: bytes) -> tuple[str, str] | None:
    """``charset-normalizer``'s best guess as (text, codec), or None when it finds none.

    Among guesses it scores equally, a charset from ``_PREFERRED`` wins, so that a short
    Latin-1 text comes out as ``cp1252`` rather than an exotic code page.
    """
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    for preferred in _PREFERRED:
        if any(preferred in m.could_be_from_charset for m in tied):
            text = _attempt(data, preferred)
            if text is not None:
                return text, codecs.lookup(preferred).name
    text = str(best)
    if not looks_like_text(text):
        return None
    return text, codecs.lookup(best.encoding).name
